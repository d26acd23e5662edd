#!/bin/sh
# Health check of the dipro-fhir Orthanc image: GET /system as the configured user. The
# credentials go to curl on stdin (-K -), not on its command line (ps would show them).
printf 'user = "%s:%s"\n' "${ORTHANC_USERNAME:-dipro}" "${ORTHANC_PASSWORD}" |
  curl --config - --fail --silent --show-error --max-time 5 -o /dev/null http://127.0.0.1:8042/system
