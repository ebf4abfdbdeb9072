# shellcheck shell=bash
# The SASL_SSL listener of deploy/kafka/start (FLOWGUARD_KAFKA_SECURITY=sasl_ssl). Sourced, not run;
# needs deploy/lib.sh (die) and the variables of start ($home, $port, $controller_port, $address).
#
# Made once per state directory, in $home/tls/ (mode 700): a CA, a broker certificate for
# 127.0.0.1/localhost signed by it, a client certificate (the broker requests one: mTLS), and the
# SCRAM-SHA-512 passwords of the users, added to the storage at format time. Every start writes
# $home/client.env: the FLOWGUARD_KAFKA_* settings a flowguard process needs to connect.
#
# ACLs are enforced (StandardAuthorizer). "flowguard" is a super user, as is the controller
# listener's ANONYMOUS (PLAINTEXT on 127.0.0.1, the broker's own registration). The users
# flowguard-worker, flowguard-bridge and flowguard-api have no rights until ACLs grant them some
# (docs/security.md lists those ACLs; tests/e2e/test_secured_kafka.py runs each process as its
# own user with only them). Their passwords are in $home/tls/password.<user>.

SASL_USER=flowguard
SASL_ROLES=(flowguard-worker flowguard-bridge flowguard-api)

# make_tls: the CA, the broker's and the client's key and certificate (PEM), once.
make_tls() {
    local tls=$home/tls
    [ -f "$tls/.done" ] && return 0
    command -v openssl >/dev/null 2>&1 || die "openssl not found: the SASL_SSL broker needs it to make certificates"
    rm -rf "$tls" && mkdir -m 700 "$tls" || die "cannot create $tls"
    (
        cd "$tls" || exit 1
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=flowguard test CA" \
            -keyout ca.key -out ca.crt
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >broker.ext
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout broker.key -out broker.csr
        openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile broker.ext -out broker.crt
        cat broker.key broker.crt >broker.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=$SASL_USER" -keyout client.key -out client.csr
        openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -out client.crt
        openssl rand -hex 24 >password
        for role in "${SASL_ROLES[@]}"; do openssl rand -hex 24 >"password.$role"; done
        chmod 600 ./*.key broker.pem password ./password.*
        touch .done
    ) >>"$home/tls.log" 2>&1 || die "openssl could not make the certificates (see $home/tls.log)"
}

# secure_config: the listener lines of server.properties for a SASL_SSL broker.
secure_config() {
    local tls=$home/tls password
    password=$(cat "$tls/password")
    cat <<PROPS
listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=SASL_SSL://127.0.0.1:$port
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SASL_USER" password="$password";
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
ssl.client.auth=requested
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:$SASL_USER;User:ANONYMOUS
PROPS
}

# scram_format_args: what StorageTool format adds for the SCRAM users (Kafka 3.5+: --add-scram).
scram_format_args() {
    local role
    echo "--add-scram"
    echo "SCRAM-SHA-512=[name=$SASL_USER,password=$(cat "$home/tls/password")]"
    for role in "${SASL_ROLES[@]}"; do
        echo "--add-scram"
        echo "SCRAM-SHA-512=[name=$role,password=$(cat "$home/tls/password.$role")]"
    done
}

# write_client_env: the settings a client needs, sourced by tests and shells (mode 600).
write_client_env() {
    local tls=$home/tls
    (
        umask 077
        cat >"$home/client.env" <<ENV
FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS=$address
FLOWGUARD_KAFKA_SECURITY_PROTOCOL=SASL_SSL
FLOWGUARD_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
FLOWGUARD_KAFKA_SASL_USERNAME=$SASL_USER
FLOWGUARD_KAFKA_SASL_PASSWORD=$(cat "$tls/password")
FLOWGUARD_KAFKA_SSL_CAFILE=$tls/ca.crt
FLOWGUARD_KAFKA_SSL_CERTFILE=$tls/client.crt
FLOWGUARD_KAFKA_SSL_KEYFILE=$tls/client.key
ENV
        # The same login for Kafka's own tools (deploy/kafka/acls, console-consumer).
        cat >"$home/client.properties" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SASL_USER" password="$(cat "$tls/password")";
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
PROPS
    )
}
