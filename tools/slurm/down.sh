#!/usr/bin/env bash
# Stops the local SLURM cluster that tools/slurm/up.sh started: slurmd, slurmctld, slurmdbd,
# mariadbd, munged, each by the pid in its pid file under $SEPC_SLURM_DIR (never by name).
# Idempotent. A daemon counts as stopped once it has exited, even while it lingers as a zombie
# (PID 1 may reap slowly). The state (queue, accounting db, job ids) is kept for the next up.sh.
#
#   --purge   cancel all jobs first, then delete the state directory and the /etc/slurm configs
#             that up.sh wrote for it (job ids restart at 1 afterwards).
#   SEPC_SLURM_DIR   state directory (default: <repo>/.slurm)
set -euo pipefail
t0=$(date +%s.%N)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
DIR=${SEPC_SLURM_DIR:-$REPO/.slurm}
ETC=/etc/slurm
MARK="# sepc-bench: written by tools/slurm/up.sh; rewritten on every run, do not edit"
PURGE=0
for a in "$@"; do
  case $a in
    --purge) PURGE=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
  esac
done

log() { printf '[slurm-down %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf 'slurm-down: FAILED: %s\n' "$*" >&2; exit 1; }
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

[ "$(id -u)" = 0 ] || die "must run as root (try: sudo $0)"
if [ ! -d "$DIR" ]; then
  log "nothing to stop: no state directory $DIR"
  exit 0
fi
DIR=$(cd "$DIR" && pwd -P)
RUN=$DIR/run

pid_of() { [ -s "$RUN/$1.pid" ] && tr -dc 0-9 <"$RUN/$1.pid"; }
# alive NAME [PID]: PID (default: from NAME's pid file) is a live, non-zombie process named NAME.
alive() {
  local pid=${2:-} st comm
  [ -n "$pid" ] || pid=$(pid_of "$1") || return 1
  [ -n "$pid" ] || return 1
  st=$(awk '/^State:/{print $2}' "/proc/$pid/status" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [ "$comm" = "$1" ]
}

stop() {  # stop NAME GRACE-SECONDS: SIGTERM, wait, then SIGKILL
  local name=$1 grace=$2 pid end
  pid=$(pid_of "$name" || true)
  if [ -z "$pid" ] || ! alive "$name" "$pid"; then
    rm -f "$RUN/$name.pid"
    return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  end=$(( $(date +%s) + grace ))
  while alive "$name" "$pid" && [ "$(date +%s)" -lt "$end" ]; do sleep 0.1; done
  if alive "$name" "$pid"; then
    log "$name (pid $pid) ignored SIGTERM for ${grace}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    end=$(( $(date +%s) + 10 ))
    while alive "$name" "$pid" && [ "$(date +%s)" -lt "$end" ]; do sleep 0.1; done
    alive "$name" "$pid" && die "$name (pid $pid) survived SIGKILL"
  fi
  rm -f "$RUN/$name.pid"
  stopped+=("$name")
}

if alive slurmctld; then
  if [ "$PURGE" = 1 ]; then
    ids=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
    if [ -n "${ids// /}" ]; then
      log "cancelling jobs: $ids"
      # shellcheck disable=SC2086
      scancel $ids 2>/dev/null || true
      end=$(( $(date +%s) + 30 ))
      while [ -n "$(squeue -h -o %A 2>/dev/null)" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 0.5; done
    fi
  else
    n=$(squeue -h -t RUNNING,COMPLETING -o %A 2>/dev/null | wc -l || true)
    [ "${n:-0}" -gt 0 ] && log "note: $n job(s) still running; their steps go on and the next up.sh picks them up (scancel them, or use --purge, to end them)"
  fi
fi

stopped=()
stop slurmd 20
stop slurmctld 30
stop slurmdbd 30
stop mariadbd 60
stop munged 10
if [ ${#stopped[@]} -gt 0 ]; then log "stopped ${stopped[*]}"; else log "nothing was running"; fi

if [ "$PURGE" = 1 ]; then
  # Only delete what looks like up.sh's state directory.
  case $DIR in /|"$REPO"|"$HOME"|/root|/etc|/usr|/var|/tmp) die "refusing to delete $DIR" ;; esac
  [ -d "$DIR/run" ] || [ -d "$DIR/spool" ] || [ -d "$DIR/mysql" ] || [ -z "$(ls -A "$DIR")" ] \
    || die "refusing to delete $DIR: it does not look like a state directory of up.sh"
  rm -rf "$DIR"
  for f in "$ETC/slurm.conf" "$ETC/slurmdbd.conf" "$ETC/gres.conf"; do
    if [ -f "$f" ] && grep -qxF "$MARK" "$f" && grep -qxF "# state dir: $DIR" "$f"; then rm -f "$f"; fi
  done
  log "purged $DIR"
fi
log "done in $(elapsed)s"
