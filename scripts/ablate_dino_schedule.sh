#!/usr/bin/env bash
# Issue 29's short DINO ablation: each variant trains the first EPOCHS_SHORT epochs of the long run's schedule
# (--epochs LONG, so the lr, weight decay, teacher momentum and temperature are the long run's at those epochs), then
# stops; the variant chosen resumes in place to the full LONG epochs with --resume auto. Online kNN@20 per epoch is
# in OUT/<name>/log.csv. Run from the repository root:
#   scripts/ablate_dino_schedule.sh PATH/cifar10-jpg OUT_DIR [LONG=48] [EPOCHS_SHORT=3]
set -u
DATA=${1:?usage: $0 CIFAR10_JPG_DIR OUT_DIR [LONG] [EPOCHS_SHORT]}
OUT=${2:?usage: $0 CIFAR10_JPG_DIR OUT_DIR [LONG] [EPOCHS_SHORT]}
LONG=${3:-48}
SHORT=${4:-3}
common=(--method dino --profile zoo --data "$DATA" --epochs "$LONG" --seed 0 --no-progress --resume auto
        --set arch_kwargs.drop_path_rate=0.0)
knn_rows() { [ -f "$1/log.csv" ] && python - "$1/log.csv" <<'PY' || echo 0
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(sum(1 for r in rows if r.get("knn_top1") not in (None, "")))
PY
}
run() {
  local name=$1; shift
  local dir="$OUT/$name"
  if [ "$(knn_rows "$dir")" -ge "$SHORT" ]; then echo "== $name done already"; return; fi
  echo "== $name $(date +%T)"
  sslzoo pretrain "${common[@]}" "$@" --output "$dir" >> "$OUT/$name.out" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(knn_rows "$dir")" -ge "$SHORT" ]; then kill "$pid"; break; fi
    sleep 10
  done
  wait "$pid"; echo "   stopped $(date +%T)"
}
mkdir -p "$OUT"
run dp0
run temp002 --set framework.teacher_temp=0.02 --set framework.teacher_temp_final=0.02
run proto256 --set framework.head.out_dim=256
run nll_false --set framework.head.norm_last_layer=false
run ema099 --set framework.teacher_momentum=0.99
