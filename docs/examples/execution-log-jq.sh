#!/usr/bin/env bash
# Read flowguard's execution log with Kafka's own console consumer and jq: one tab-separated
# line per record (recorded_at, workflow, execution_id, seq, outcome, settled, actions).
#
#   docs/examples/execution-log-jq.sh BOOTSTRAP PREFIX [console-consumer options...]
#   docs/examples/execution-log-jq.sh 127.0.0.1:9092 flowguard --from-beginning --max-messages 100
#
# KAFKA_CONSOLE_CONSUMER names the consumer: kafka-console-consumer.sh from a Kafka distribution,
# or (the default) deploy/kafka/console-consumer, the same tool with jars from Maven Central.
# The final record of an execution is the one with its highest seq; "settled" says nothing more
# will follow (every action has a final status). Fields jq is not asked for are ignored, so a
# later flowguard's new fields change nothing here; lines that are not JSON, or of another
# schema, are skipped.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BOOTSTRAP PREFIX [console-consumer options...]" >&2; exit 2; }
bootstrap=$1 prefix=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
consumer=${KAFKA_CONSOLE_CONSUMER:-$here/../../deploy/kafka/console-consumer}
command -v jq >/dev/null || { echo "jq not found (apt-get install jq)" >&2; exit 1; }

"$consumer" --bootstrap-server "$bootstrap" --topic "$prefix.execution-log" "$@" |
    jq -R -r --unbuffered '
        fromjson?
        | select(.schema == "flowguard.execution/1")
        | [ .recorded_at // "-",
            .workflow.id,
            .execution_id,
            .seq,
            .outcome + (if .reason then "(" + .reason + ")" else "" end),
            (all(.actions[]; .status | IN("succeeded", "failed", "skipped", "cancelled"))),
            ([.actions[] | .type + ":" + .status] | join(","))
          ]
        | @tsv'
