#!/bin/sh
# One-shot: create the media bucket and send its ObjectCreated events to the
# MinIO notification target DROVER (Kafka topic media.object.events).
# Idempotent: safe to run again.
set -eu
MINIO_ROOT_PASSWORD="$(cat /run/secrets/minio_root_password)"
mc alias set local "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$MEDIA_BUCKET"
if ! mc event list "local/$MEDIA_BUCKET" arn:minio:sqs::DROVER:kafka | grep -q put; then
	mc event add "local/$MEDIA_BUCKET" arn:minio:sqs::DROVER:kafka --event put
fi
mc event list "local/$MEDIA_BUCKET"
