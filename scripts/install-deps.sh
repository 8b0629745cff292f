#!/bin/sh
# Installs the Debian packages frontdesk needs that are missing, in one apt-get call.
#   scripts/install-deps.sh run     build/run deps only (PyAudio compiles against portaudio19-dev)
#   scripts/install-deps.sh test    + the real peers the tests start: Kamailio, SIPp, baresip, PostgreSQL,
#                                   and sox + espeak-ng for caller audio fixtures
#   scripts/install-deps.sh bench   + tshark (wire measurements) and espeak-ng
# Never starts services: maintainer scripts are kept from starting kamailio/postgresql (they would
# take *:5060 and 5432); tests start their own instances on loopback.
set -eu
tier=${1:-test}
want="libportaudio2 portaudio19-dev"
case "$tier" in
  run) ;;
  test) want="$want kamailio sip-tester baresip sox espeak-ng postgresql" ;;
  bench) want="$want kamailio sip-tester baresip sox postgresql tshark espeak-ng" ;;
  *) echo "install-deps: unknown tier '$tier' (run, test, bench)" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
command -v gcc >/dev/null 2>&1 || want="$want gcc libc6-dev"
$PY -c 'import sysconfig,os,sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")) else 1)' \
  || want="$want python3-dev"
$PY -c 'import ensurepip' 2>/dev/null || want="$want python3-venv"

missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "install-deps: these Debian packages are missing and I am not root:$missing" >&2
    echo "install-deps: run as root: apt-get install -y --no-install-recommends$missing" >&2
    exit 1
  fi
else SUDO=""; fi

echo "install-deps: installing$missing"
added_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d; added_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections 2>/dev/null || true
$SUDO apt-get update -q || true
$SUDO apt-get install -y -q --no-install-recommends $missing
[ -n "$added_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
exit 0
