#!/usr/bin/env bash
# Starts a real single-node SLURM cluster on this machine (Debian 12, run as root), so that
# tests and CI submit through submitit to a real slurmctld. Idempotent: when the daemons it
# started are alive it only checks them and reports ready.
#
# Installs (if missing, --no-install-recommends): slurmctld slurmd slurm-client munge slurmdbd
# slurm-wlm-mysql-plugin mariadb-server. Starts, each in its own session, by pid file:
#   munged -> mariadbd (private datadir, socket in the state dir) -> slurmdbd -> slurmctld -> slurmd
# and waits until the node is idle in sinfo and sacct answers (submitit needs accounting).
#
# Every state/log/pid/spool/db file lives under $SEPC_SLURM_DIR. Outside it this script writes
# only /etc/slurm/{slurm,slurmdbd,gres}.conf (where clients find them without SLURM_CONF), and
# adds `hostname -s` to /etc/hosts when it does not resolve. A daemon already running when its
# config changes is restarted (GresTypes, for one, is read at start only).
#
#   SEPC_SLURM_DIR      state directory (default: <repo>/.slurm)
#   SEPC_SLURM_CPUS     CPUs the node declares, at least the real count (default: 8, so that a
#                       paper cell's 8 one-CPU tasks fit on one node)
#   SEPC_SLURM_GPUS     GPUs the node advertises as generic resources, backed by empty files:
#                       no devices, but sbatch --gpus-per-node requests are scheduled (default: 8)
#   SEPC_SLURM_PORT     slurmctld port; slurmd uses +1, slurmdbd +2 (default: 6817)
#   SEPC_SLURM_CLUSTER  ClusterName (default: sepc)
#   SEPC_SLURM_TIMEOUT  seconds each daemon may take to come up (default: 60)
#   SEPC_SLURM_FORCE=1  overwrite an /etc/slurm/slurm.conf that this script did not write
# Stop with tools/slurm/down.sh (--purge also deletes the state directory).
set -euo pipefail
t0=$(date +%s.%N)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
DIR=${SEPC_SLURM_DIR:-$REPO/.slurm}
CPUS_WANT=${SEPC_SLURM_CPUS:-8}
GPUS=${SEPC_SLURM_GPUS:-8}
PORT=${SEPC_SLURM_PORT:-6817}
CLUSTER=${SEPC_SLURM_CLUSTER:-sepc}
TIMEOUT=${SEPC_SLURM_TIMEOUT:-60}
ETC=/etc/slurm
MARK="# sepc-bench: written by tools/slurm/up.sh; rewritten on every run, do not edit"
PKGS=(slurmctld slurmd slurm-client munge slurmdbd slurm-wlm-mysql-plugin mariadb-server)

log() { printf '[slurm-up %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf 'slurm-up: FAILED: %s\n' "$*" >&2; exit 1; }
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

[ "$(id -u)" = 0 ] || die "must run as root (try: sudo $0)"
[[ $CPUS_WANT =~ ^[0-9]+$ && $GPUS =~ ^[0-9]+$ && $PORT =~ ^[0-9]+$ && $TIMEOUT =~ ^[0-9]+$ ]] \
  || die "SEPC_SLURM_CPUS, SEPC_SLURM_GPUS, SEPC_SLURM_PORT and SEPC_SLURM_TIMEOUT must be integers"
[[ $CLUSTER =~ ^[a-z][a-z0-9_]*$ ]] || die "SEPC_SLURM_CLUSTER must be lowercase [a-z0-9_]"

# ---- packages -------------------------------------------------------------------------------
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  aptlog=$(mktemp /tmp/slurm-up-apt.XXXXXX)
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${PKGS[@]}"; } >"$aptlog" 2>&1 \
    || { tail -n 20 "$aptlog" >&2; die "apt-get install ${PKGS[*]} failed (log: $aptlog)"; }
  rm -f "$aptlog"
  log "packages installed ($(elapsed)s)"
fi

# ---- state directory ------------------------------------------------------------------------
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd -P)
[[ $DIR =~ ^[A-Za-z0-9._/+@:~-]+$ ]] \
  || die "SEPC_SLURM_DIR=$DIR: use a path without spaces, '#', ',' or '=' (slurm.conf syntax)"
RUN=$DIR/run LOGD=$DIR/log
MUNGE_SOCK=$RUN/munge.socket MYSQL_SOCK=$RUN/mysqld.sock
[ ${#MUNGE_SOCK} -lt 100 ] || die "SEPC_SLURM_DIR=$DIR is too long for a unix socket path; pick a shorter one"
mkdir -p "$RUN" "$LOGD" "$DIR/etc" "$DIR/munge" "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/gres"
chmod 0755 "$DIR" "$RUN"            # clients (any user) reach the munge socket in run/
chmod 0700 "$DIR/etc" "$DIR/munge"

pidfile() { echo "$RUN/$1.pid"; }
# alive NAME: the pid in NAME's pid file is a live (non-zombie) process called NAME.
alive() {
  local f pid st comm
  f=$(pidfile "$1"); [ -s "$f" ] || return 1
  pid=$(tr -dc 0-9 <"$f"); [ -n "$pid" ] || return 1
  st=$(awk '/^State:/{print $2}' "/proc/$pid/status" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [ "$comm" = "$1" ]
}
port_busy() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

fail() {  # fail NAME MESSAGE: one line naming the daemon, then the tail of its logs
  local name=$1 f; shift
  printf 'slurm-up: FAILED: %s %s (logs under %s; stop with tools/slurm/down.sh)\n' "$name" "$*" "$LOGD" >&2
  # slurm daemons in -D mode copy their log to .out, which holds this start only; mariadbd and
  # munged put their errors in .log / .out respectively.
  local files=("$LOGD/$name.out")
  case $name in slurm*) [ -s "$LOGD/$name.out" ] || files=("$LOGD/$name.log") ;; *) files+=("$LOGD/$name.log") ;; esac
  for f in "${files[@]}"; do
    if [ -s "$f" ]; then printf -- '--- tail of %s ---\n' "$f" >&2; tail -n 15 "$f" >&2; fi
  done
  exit 1
}

# start NAME CMD...: run CMD in the foreground of its own session, detached from our stdio,
# with a clean environment; its pid (= the daemon's) goes to the pid file.
declare -A T_START=() T_READY=()   # per daemon: when started, seconds until ready
start() {
  local name=$1; shift
  T_START[$name]=${T_START[$name]:-$(date +%s.%N)}
  : >"$LOGD/$name.out"
  # shellcheck disable=SC2086  # EXTRA_ENV: zero or more VAR=value words
  env -i PATH="$PATH" LANG=C.UTF-8 HOME=/root ${EXTRA_ENV:-} \
    setsid "$@" >>"$LOGD/$name.out" 2>&1 </dev/null &
  local pid=$! i
  echo "$pid" >"$(pidfile "$name")"
  # The child is still bash, then env, then setsid until it execs the daemon; alive() checks the
  # command name, so it would call a daemon dead in that window (seen once on a busy machine).
  for i in $(seq 100); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] && break
    [ -e "/proc/$pid" ] || break
    sleep 0.05
  done
}

# wait_up NAME DESCRIPTION CMD...: until CMD succeeds; fails fast if the daemon died or CMD
# returns 3 (hopeless). CMD may explain its last failure in WHY.
WHY=""
wait_up() {
  local name=$1 what=$2 end=$(( $(date +%s) + TIMEOUT )) rc; shift 2
  WHY=""
  while :; do
    rc=0; "$@" >/dev/null 2>&1 || rc=$?
    [ "$rc" = 0 ] && break
    [ "$rc" = 3 ] && fail "$name" "$WHY"
    alive "$name" || fail "$name" "exited while starting (waiting for: $what)"
    [ "$(date +%s)" -lt "$end" ] || fail "$name" "not ready within ${TIMEOUT}s (waiting for: $what)${WHY:+; $WHY}"
    sleep 0.2
  done
  if [ -n "${T_START[$name]:-}" ] && [ -z "${T_READY[$name]:-}" ]; then
    T_READY[$name]=$(awk -v a="${T_START[$name]}" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  fi
}

# ---- host name and configs ------------------------------------------------------------------
HOST=$(hostname -s)
if ! getent hosts "$HOST" >/dev/null; then
  log "adding $HOST to /etc/hosts"
  printf '127.0.0.1\t%s\n' "$HOST" >>/etc/hosts
fi

mkdir -p "$ETC"
if [ -f "$ETC/slurm.conf" ]; then
  if ! grep -qxF "$MARK" "$ETC/slurm.conf"; then
    [ "${SEPC_SLURM_FORCE:-}" = 1 ] \
      || die "$ETC/slurm.conf was not written by this script; move it away or set SEPC_SLURM_FORCE=1"
  else
    other=$(sed -n 's/^# state dir: //p' "$ETC/slurm.conf")
    if [ -n "$other" ] && [ "$other" != "$DIR" ] && [ -s "$other/run/slurmctld.pid" ] \
       && [ "$(cat "/proc/$(cat "$other/run/slurmctld.pid")/comm" 2>/dev/null)" = slurmctld ]; then
      die "another cluster (state dir $other) is running; stop it: SEPC_SLURM_DIR=$other tools/slurm/down.sh"
    fi
  fi
fi

# Node line: topology and memory from `slurmd -C`; more CPUs than real ones are declared flat
# (1 socket x N cores) and accepted thanks to SlurmdParameters=config_overrides.
hw=$(slurmd -C | head -1)
val() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
real_cpus=$(val CPUs) real_mem=$(val RealMemory)
[ -n "$real_cpus" ] && [ -n "$real_mem" ] || die "cannot parse 'slurmd -C': $hw"
mem=$(( real_mem * 95 / 100 ))
if [ "$CPUS_WANT" -gt "$real_cpus" ]; then
  topo="CPUs=$CPUS_WANT Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS_WANT ThreadsPerCore=1"
else
  topo=$(grep -o 'CPUs=[0-9]* .*ThreadsPerCore=[0-9]*' <<<"$hw")
fi
ncpus=$(sed 's/CPUs=\([0-9]*\).*/\1/' <<<"$topo")
node_gres=""
[ "$GPUS" -gt 0 ] && node_gres=" Gres=gpu:$GPUS"

new_slurm_conf=$(cat <<EOF
$MARK
# state dir: $DIR
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK,cred_expire=10
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGD/slurmctld.log
SlurmdLogFile=$LOGD/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# fast scheduling for tests: start on submit, 2 s tick, requeued jobs held 10 s, kill after 5 s
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=1
KillWait=5
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
# accounting: sacct is how submitit reads job states
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
# clients and slurmctld authenticate to slurmdbd with this (not AuthInfo): our munge socket
AccountingStoragePass=socket=$MUNGE_SOCK
# like a real site: jobs need an account association (a wrong --account is refused at submit)
AccountingStorageEnforce=associations
JobCompType=jobcomp/none
# GPUs as generic resources (gres.conf: empty files, no devices): --gpus-per-node is scheduled
GresTypes=gpu
AccountingStorageTRES=gres/gpu
NodeName=$HOST NodeAddr=127.0.0.1 $topo RealMemory=$mem$node_gres State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
new_dbd_conf=$(cat <<EOF
$MARK
# state dir: $DIR
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGD/slurmdbd.log
DebugLevel=info
# private MariaDB, reached as root over the unix socket in \$MYSQL_UNIX_PORT (set by up.sh)
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
)
# slurmd refuses a gres count without device files: empty regular files stand in for them (it
# logs "is not a valid character or block device" for each, and schedules them all the same).
gres_files=""
if [ "$GPUS" -gt 0 ]; then
  for ((i = 0; i < GPUS; i++)); do : >>"$DIR/gres/fakegpu$i"; done
  gres_files="NodeName=$HOST Name=gpu File=$DIR/gres/fakegpu[0-$((GPUS - 1))]"
fi
new_gres_conf=$(printf '%s\n# state dir: %s\n%s' "$MARK" "$DIR" "$gres_files")
changed=()   # configs rewritten with new content
write_conf() {  # write_conf FILE MODE CONTENT
  if [ "$(cat "$1" 2>/dev/null)" != "$3" ]; then
    [ -f "$1" ] && changed+=("$(basename "$1")")
    printf '%s\n' "$3" >"$1.tmp.$$" && chmod "$2" "$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"
  fi
  chmod "$2" "$1"
}
write_conf "$ETC/slurm.conf" 0644 "$new_slurm_conf"
write_conf "$ETC/slurmdbd.conf" 0600 "$new_dbd_conf"
write_conf "$ETC/gres.conf" 0644 "$new_gres_conf"

# ---- daemons --------------------------------------------------------------------------------
# stop_daemon NAME: SIGTERM by pid file, then SIGKILL after 30 s (a running daemon whose config
# changed: it reads some keys, GresTypes for one, only when it starts).
stop_daemon() {
  local pid i
  pid=$(tr -dc 0-9 <"$(pidfile "$1")")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 300); do alive "$1" || break; sleep 0.1; done
  if alive "$1"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  rm -f "$(pidfile "$1")"
}
restart=()
case " ${changed[*]} " in *" slurm.conf "*|*" gres.conf "*) restart+=(slurmd slurmctld) ;; esac
case " ${changed[*]} " in *" slurmdbd.conf "*) restart+=(slurmdbd) ;; esac
for d in "${restart[@]}"; do
  if alive "$d"; then log "$d runs with an older config: restarting it"; stop_daemon "$d"; fi
done
started=()
running=()
note_running() { running+=("$1"); }

# munged: private key and socket in the state dir.
if alive munged; then note_running munged; else
  if [ ! -s "$DIR/etc/munge.key" ]; then
    mungekey --create --keyfile="$DIR/etc/munge.key" >/dev/null 2>&1 \
      || dd if=/dev/urandom of="$DIR/etc/munge.key" bs=1024 count=1 status=none
    chmod 0400 "$DIR/etc/munge.key"
  fi
  rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
  start munged munged --foreground --force --key-file="$DIR/etc/munge.key" --socket="$MUNGE_SOCK" \
    --pid-file="$RUN/munged.pid" --seed-file="$DIR/munge/munged.seed"
  started+=(munged)
fi
wait_up munged "a munge credential round trip" \
  bash -c "munge -n -S '$MUNGE_SOCK' | unmunge -S '$MUNGE_SOCK'"

# mariadbd: private datadir, no networking.
sql() { mariadb --no-defaults --socket="$MYSQL_SOCK" -uroot -N -e "$1"; }
if alive mariadbd; then note_running mariadbd; else
  T_START[mariadbd]=$(date +%s.%N)
  if [ ! -d "$DIR/mysql/mysql" ]; then
    rm -rf "$DIR/mysql"
    mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root \
      --auth-root-authentication-method=socket --skip-test-db >"$LOGD/mariadb-install.log" 2>&1 \
      || { rm -rf "$DIR/mysql"; cp "$LOGD/mariadb-install.log" "$LOGD/mariadbd.out"
           fail mariadbd "mariadb-install-db failed"; }
  fi
  rm -f "$MYSQL_SOCK"
  start mariadbd mariadbd --no-defaults --datadir="$DIR/mysql" --user=root --socket="$MYSQL_SOCK" \
    --skip-networking --pid-file="$RUN/mariadbd.pid" --log-error="$LOGD/mariadbd.log" \
    --innodb-buffer-pool-size=128M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900
  started+=(mariadbd)
fi
wait_up mariadbd "SELECT 1 on $MYSQL_SOCK" sql 'SELECT 1'

# slurm daemons: foreground (-D) so that a fatal start is seen at once; they write the same pid.
start_slurm() {  # start_slurm NAME PORT [DAEMON-ARGS...]
  local name=$1 port=$2; shift 2
  if alive "$name"; then note_running "$name"; return; fi
  if port_busy "$port"; then
    local who; who=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:.*' | head -1 || true)
    die "$name cannot start: port $port is already in use${who:+ by $who} (a system SLURM? stop it, or set SEPC_SLURM_PORT)"
  fi
  start "$name" "$name" -D "$@"
  started+=("$name")
}
EXTRA_ENV="MYSQL_UNIX_PORT=$MYSQL_SOCK" start_slurm slurmdbd $((PORT + 2))
wait_up slurmdbd "sacctmgr to reach slurmdbd" sacctmgr -n -P list cluster
start_slurm slurmctld "$PORT"
ctld_up() { scontrol ping | grep -q 'UP'; }
wait_up slurmctld "scontrol ping" ctld_up
start_slurm slurmd $((PORT + 1)) -N "$HOST"

RESUMED=""
node_ready() {
  local st reason
  IFS='|' read -r st reason < <(sinfo -h -N -n "$HOST" -o '%T|%E' | head -1) || true
  WHY="node $HOST is ${st:-unknown}${reason:+ ($reason)}"
  case $st in
    idle|mixed|allocated|completing) return 0 ;;
    inval) return 3 ;;   # slurm.conf does not match the hardware: will not fix itself
    down|drained|draining|drain)
      # Left so by an earlier run (e.g. "Kill task failed"): once slurmd answers, put it back.
      if [ -z "$RESUMED" ]; then
        scontrol update NodeName="$HOST" State=RESUME && RESUMED="$st${reason:+ ($reason)}"
      fi ;;
  esac
  return 1
}
wait_up slurmd "node $HOST idle in sinfo" node_ready
[ -z "$RESUMED" ] || log "node $HOST was $RESUMED: resumed it"
acct_ready() { sacct -n -X -S now-1minute >/dev/null && sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; }
wait_up slurmdbd "sacct and cluster $CLUSTER registered in accounting" acct_ready
# One account, and an association for root and the invoking user (idempotent).
assoc_user=${SUDO_USER:-$(id -un)}
sacctmgr -n -P list account format=account | grep -qx sepc || \
  sacctmgr -i -Q add account sepc Cluster="$CLUSTER" Description=sepc-bench >/dev/null
for u in root "$assoc_user"; do
  sacctmgr -n -P list assoc user="$u" format=account | grep -qx sepc || \
    sacctmgr -i -Q add user "$u" DefaultAccount=sepc Account=sepc Cluster="$CLUSTER" >/dev/null
done

if [ ${#started[@]} -eq 0 ]; then
  log "already running (${running[*]})"
else
  s=""; for d in "${started[@]}"; do s+=" $d(${T_READY[$d]:-?}s)"; done
  log "started${s}${running:+; already running: ${running[*]}}"
fi
log "ready in $(elapsed)s: cluster $CLUSTER, node $HOST ($ncpus CPUs, ${mem} MB), partition debug; state in $DIR"
