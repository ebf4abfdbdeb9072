# shellcheck shell=bash
# resolve_jars POM LIB: the runtime jars of POM from Maven Central into LIB, once; again only when
# POM changed or a jar went missing (LIB/.stamp holds POM's hash and the jar count). Sourced by
# deploy/kafka/start (the broker, pom.xml) and deploy/kafka/console-consumer (tools/pom.xml).
# Needs deploy/lib.sh (die, lock) sourced first.

jars_current() {
    local lib=$1 want count
    [ -f "$lib/.stamp" ] || return 1
    read -r want count <"$lib/.stamp"
    [ "$want" = "$2" ] && [ "$(find "$lib" -maxdepth 1 -name '*.jar' | wc -l)" = "$count" ]
}

resolve_jars() {
    local pom=$1 lib=$2 stamp count log
    stamp=$(sha256sum "$pom" | cut -c1-16)
    jars_current "$lib" "$stamp" && return 0
    mkdir -p "$(dirname "$lib")" || die "cannot create $(dirname "$lib")"
    lock "$lib.lock"
    jars_current "$lib" "$stamp" && return 0 # another start resolved them while we waited
    command -v mvn >/dev/null 2>&1 || die "mvn not found: Maven resolves the Kafka jars (apt-get install maven)"
    log=$lib.mvn.log
    echo "resolving Kafka jars from Maven Central into $lib ..." >&2
    rm -rf "$lib.tmp"
    if ! mvn -B -f "$pom" dependency:copy-dependencies \
        -DoutputDirectory="$lib.tmp" -DincludeScope=runtime >"$log" 2>&1; then
        grep -E '^\[ERROR\] [^ ]' "$log" | head -n 3 | sed 's/^/    /' >&2
        die "Maven could not resolve the Kafka jars (full output: $log)"
    fi
    count=$(find "$lib.tmp" -maxdepth 1 -name '*.jar' | wc -l)
    rm -rf "$lib" && mv "$lib.tmp" "$lib" && echo "$stamp $count" >"$lib/.stamp"
    echo "resolved $count jars" >&2
}
