#!/bin/bash
# Entrypoint of the dipro-fhir Orthanc image: writes Orthanc's configuration from the
# environment, then runs Orthanc on it (PID 1 is Orthanc; it stops cleanly on SIGTERM).
#   ORTHANC_NAME (default dipro-orthanc), ORTHANC_USERNAME (default dipro), ORTHANC_PASSWORD
#   (required): HTTP Basic auth for every request, REST and DICOMweb.
set -euo pipefail

json_string() {
  # A JSON string literal of $1 (backslash and double quote escaped; no control characters).
  local value=${1//\\/\\\\}
  printf '"%s"' "${value//\"/\\\"}"
}

config=/etc/dipro-orthanc/orthanc.json
cat >"$config" <<JSON
{
  "Name": $(json_string "${ORTHANC_NAME:-dipro-orthanc}"),
  "StorageDirectory": "/var/lib/orthanc/db",
  "IndexDirectory": "/var/lib/orthanc/db",
  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  "HttpPort": 8042,
  "RemoteAccessAllowed": true,
  "AuthenticationEnabled": true,
  "RegisteredUsers": {
    $(json_string "${ORTHANC_USERNAME:-dipro}"): $(json_string "${ORTHANC_PASSWORD:?ORTHANC_PASSWORD must be set}")
  },
  "DicomServerEnabled": false,
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/"}
}
JSON
chmod 0600 "$config"
exec /usr/sbin/Orthanc "$config"
