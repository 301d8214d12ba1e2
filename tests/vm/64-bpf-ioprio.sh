#!/bin/sh
# timeout: 180
# cost: 15
# The submitter's I/O priority survives the redirect: --mode bpf (the
# program's SQE; the driver sets its ioprio from the request) and
# --mode bpf-kernel (the driver's kiocb, ki_ioprio) issue the backing I/O
# with the request's priority, as the loop driver does. The device under
# test (top) is backed by a second ublk device (bottom) served by a BPF mode
# over a tmpfs file; the bottom's program counts the requests it redirects
# by the class it reads in ctx->ioprio (bpf_redirected_rt/_be/_idle in
# list --json). N O_DIRECT reads on the top under `ionice -c 3` must reach
# the bottom as >= N IDLE requests, N O_DIRECT writes under
# `ionice -c 1 -n 2` as >= N RT requests. The control: the copy server
# issues the backing I/O itself, with its own priority, so the same reads
# and writes through a copy-mode top add no IDLE and no RT requests at the
# bottom (the counters count the class, not the requests). The top's own
# program counts the class too (it saw the priority it had to carry). Data
# written is read back through the top and compared.
# Modes the kernel lacks are skipped (the whole test if neither is there).
# Measured: 8 s (TCG, 2 vCPUs).
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires control
CMP=$(tool cmp)
IONICE=$(tool ionice)
N=${N:-128}
trap 'ublk-user del --all > /dev/null 2>&1' EXIT
want=$(bpf_modes)
[ -n "$want" ] || skip "kernel lacks UBLK_F_BPF and UBLK_F_BPF_KERNEL_IO"
botmode=${want##* }

truncate -s 64M "$T/bot.img"
bot=$(add_dev "$T/bot.img" "$botmode") || exit 1
bid=$(devid "$bot")
[ -n "$(field_of "$bid" bpf_redirected_idle)" ] || { ublk-user list --json; die "list --json has no bpf_redirected_idle"; }
dd if=/dev/urandom of="$T/src" bs=4096 count="$N" 2> /dev/null

k=0
for mode in copy $want; do
  top=$(add_in_mode "$bot" "$mode") || exit 1
  tid=$(devid "$top")
  base=$((k * N))
  k=$((k + 1))

  i0=$(field_of "$bid" bpf_redirected_idle)
  r0=$(field_of "$bid" bpf_redirected_rt)
  $IONICE -c 1 -n 2 dd if="$T/src" of="$top" bs=4096 count="$N" seek="$base" oflag=direct 2> "$T/dd.err" \
    || { cat "$T/dd.err"; die "$mode: ionice -c 1 dd oflag=direct"; }
  r1=$(field_of "$bid" bpf_redirected_rt)
  $IONICE -c 3 dd if="$top" of="$T/back" bs=4096 count="$N" skip="$base" iflag=direct 2> "$T/dd.err" \
    || { cat "$T/dd.err"; die "$mode: ionice -c 3 dd iflag=direct"; }
  i1=$(field_of "$bid" bpf_redirected_idle)
  $CMP "$T/src" "$T/back" || die "$mode: data read back through $top differs"
  rt=$((r1 - r0))
  idle=$((i1 - i0))
  log "$mode: $N RT writes -> bottom RT +$rt; $N IDLE reads -> bottom IDLE +$idle (bottom: bpf_redirected $(field_of "$bid" bpf_redirected), be $(field_of "$bid" bpf_redirected_be))"
  if [ "$mode" = copy ]; then
    [ "$rt" = 0 ] && [ "$idle" = 0 ] \
      || die "copy: the server's own backing I/O reached the bottom as RT +$rt, IDLE +$idle: the counters do not count the class"
  else
    [ "$rt" -ge "$N" ] || die "$mode: $N RT writes on $top reached the backing device as $rt RT requests: ioprio dropped"
    [ "$idle" -ge "$N" ] || die "$mode: $N IDLE reads on $top reached the backing device as $idle IDLE requests: ioprio dropped"
    [ "$(field_of "$tid" bpf_redirected_rt)" -ge "$N" ] && [ "$(field_of "$tid" bpf_redirected_idle)" -ge "$N" ] \
      || { ublk-user list --json; die "$mode: the top's program did not see the classes in ctx->ioprio"; }
  fi
  ublk-user del --id "$tid" || die "del $top"
  log "ok: $mode"
done
ublk-user del --id "$bid" || die "del $bot"
rm -f "$T/bot.img" "$T/src" "$T/back"
log "PASS: bottom $botmode; top $(echo copy $want)"
