#!/bin/sh
# Prints the Kafka CLI option that carries EventPro's client security settings
# (EVENTPRO_KAFKA_* variables, the same the workers read), writing the properties file $1;
# prints nothing for PLAINTEXT. The password comes from the environment or a mounted file,
# never from this repository.
set -eu

OUT="${1:-/tmp/eventpro-client.properties}"
PROTOCOL="${EVENTPRO_KAFKA_SECURITY_PROTOCOL:-PLAINTEXT}"
[ "$PROTOCOL" = "PLAINTEXT" ] && exit 0

umask 077
echo "security.protocol=$PROTOCOL" >"$OUT"
case "$PROTOCOL" in
SASL_*)
    MECHANISM="${EVENTPRO_KAFKA_SASL_MECHANISM:-PLAIN}"
    PASSWORD="${EVENTPRO_KAFKA_SASL_PASSWORD:-}"
    if [ -n "${EVENTPRO_KAFKA_SASL_PASSWORD_FILE:-}" ]; then
        PASSWORD="$(cat "$EVENTPRO_KAFKA_SASL_PASSWORD_FILE")"
    fi
    if [ -z "${EVENTPRO_KAFKA_SASL_USERNAME:-}" ] || [ -z "$PASSWORD" ]; then
        echo "$PROTOCOL needs EVENTPRO_KAFKA_SASL_USERNAME and EVENTPRO_KAFKA_SASL_PASSWORD" >&2
        exit 1
    fi
    case "$MECHANISM" in
    PLAIN) MODULE=org.apache.kafka.common.security.plain.PlainLoginModule ;;
    *) MODULE=org.apache.kafka.common.security.scram.ScramLoginModule ;;
    esac
    echo "sasl.mechanism=$MECHANISM" >>"$OUT"
    echo "sasl.jaas.config=$MODULE required username=\"$EVENTPRO_KAFKA_SASL_USERNAME\" password=\"$PASSWORD\";" >>"$OUT"
    ;;
esac
if [ -n "${EVENTPRO_KAFKA_SSL_CAFILE:-}" ]; then
    echo "ssl.truststore.type=PEM" >>"$OUT"
    echo "ssl.truststore.location=$EVENTPRO_KAFKA_SSL_CAFILE" >>"$OUT"
fi
echo "--command-config $OUT"
