#!/usr/bin/env bash
# The DINO-family ablation of issue 18, step 2: 4-epoch runs of ADCLR on DINO's zoo recipe (no local crops, one
# 16-px query unless stated) and of DINO itself, all on dino_vit_micro_patch8_32 so that only the named setting differs.
# Each run resumes with --resume auto when the script is started again; the online kNN@20 is in RUN/log.csv.
#   scripts/ablate_dino_family.sh PATH/cifar10-jpg OUT_DIR        (about 75 min on 2 CPU cores)
set -u
DATA=${1:?usage: $0 CIFAR10_JPG_DIR OUT_DIR}
OUT=${2:?usage: $0 CIFAR10_JPG_DIR OUT_DIR}
common=(--recipe dino --profile zoo --arch dino_vit_micro_patch8_32 --data "$DATA" --epochs 4 --seed 0 --no-progress
        --resume auto)
adclr=(--method adclr "${common[@]}" --set framework.local_crops_number=0 --set method_args.size=16)
run() { local name=$1; shift; echo "== $name $(date +%T)"; sslzoo pretrain "$@" --output "$OUT/$name" \
        > "$OUT/$name.out" 2>&1; echo "   rc=$? $(date +%T)"; }
mkdir -p "$OUT"
run adclr_w1 "${adclr[@]}" --set method_args.weight=1.0
run adclr_w0 "${adclr[@]}" --set method_args.weight=0.0
run adclr_temp007 "${adclr[@]}" --set method_args.weight=1.0 --set framework.teacher_temp_final=0.07 \
    --set framework.teacher_temp_warmup_epochs=2
run adclr_standalone "${adclr[@]}" --set method_args.weight=1.0 --set method_args.teacher_queries=standalone
run adclr_q24 "${adclr[@]}" --set method_args.weight=1.0 --set method_args.size=24
run dino_zoo --method dino "${common[@]}"
run dino_lr1e-3 --method dino "${common[@]}" --lr 1e-3
run dino_dp0 --method dino "${common[@]}" --set arch_kwargs.drop_path_rate=0.0
run adclr_q32 "${adclr[@]}" --set method_args.weight=1.0 --set method_args.size=32
