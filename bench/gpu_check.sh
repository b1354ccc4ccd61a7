#!/usr/bin/env bash
# GPU check: a short NCCL DDP run over all GPUs (expconf's own launcher, then torchrun), an FSDP run,
# and the throughput (tokens/s, MFU) of gpt2_124m and of a Llama that fits one GPU (tinyllama_1b) next
# to the raw PyTorch loop, figures written to a file.
#
#   bench/gpu_check.sh [--wheels DIR] [--out DIR] [--steps N]   on a CUDA machine
#   bench/gpu_check.sh --dry-run [--out DIR]                      anywhere: CPU, gloo, tiny model
#
# The GPU machine needs only python with torch and pytorch-lightning; everything else comes from
# a folder of wheels (--wheels, default ./wheels), installed with pip --no-index. Make that folder
# on a machine with network access with:
#   pip download --only-binary=:all: --python-version 3.11 -d wheels \
#       hydra-core omegaconf antlr4-python3-runtime==4.9.3 PyYAML safetensors rich numpy
#   pip wheel --no-deps -w wheels .
# (match --python-version to the GPU machine's python).
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
WHEELS=./wheels
OUT=./gpu_check_out
STEPS=40
DRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) WHEELS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --steps) STEPS=$2; shift 2 ;;
        --dry-run) DRY=1; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
FIGURES=$OUT/figures.txt
: > "$FIGURES"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} WANDB_MODE=offline PYTHONUNBUFFERED=1
export EXPCONF_CACHE=${EXPCONF_CACHE:-$OUT/cache}

# 1. Dependencies: only what torch + pytorch-lightning do not bring, from the wheel folder.
if ! $PY -c "import expconf, hydra, omegaconf, yaml, numpy, safetensors, tokenizers" 2>/dev/null; then
    if [ -d "$WHEELS" ]; then
        $PY -m pip install -q --no-index --find-links "$WHEELS" \
            hydra-core omegaconf antlr4-python3-runtime PyYAML safetensors rich numpy tokenizers
        if ls "$WHEELS"/expconf-*.whl >/dev/null 2>&1; then
            $PY -m pip install -q --no-index --no-deps --find-links "$WHEELS" expconf
        else
            $PY -m pip install -q --no-index --no-deps --no-build-isolation -e .
        fi
    else
        echo "expconf or its dependencies are missing and there is no wheel folder $WHEELS" >&2
        exit 1
    fi
fi

# Throughput recipes: gpt2_124m and tinyllama_1b (a Llama: RoPE, RMSNorm, SwiGLU, 4 key/value
# heads) as published, with a global batch cut to a few micro-batches so a step takes about a second.
THROUGHPUT=(gpt2_124m tinyllama_1b)
if [ "$DRY" = 1 ]; then
    NGPU=2; ACCEL=cpu; RECIPE=gpt2_124m; DEVICE=cpu; STEPS=4; WARMUP=1; REPEATS=1
    MODEL=(model.n_layer=1 model.n_head=2 model.n_embd=32 model.ffn_hidden_size=64 model.compile=false
           data.seq_length=32 data.micro_batch_size=4 data.global_batch_size=8 data.corpus_megabytes=1)
    BATCH_gpt2_124m=(); BATCH_tinyllama_1b=(model.n_kv_head=1)
else
    NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
    [ "$NGPU" -ge 1 ] || { echo "no CUDA device visible" >&2; exit 1; }
    ACCEL=gpu; RECIPE=gpt2_124m; DEVICE=cuda; WARMUP=10; REPEATS=2
    MODEL=(data.corpus_megabytes=8)
    BATCH_gpt2_124m=(data.micro_batch_size=16 data.global_batch_size=64)
    BATCH_tinyllama_1b=(data.micro_batch_size=4 data.global_batch_size=8)
fi
$PY - <<'EOF' | tee -a "$FIGURES"
import torch, pytorch_lightning as pl
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
print(f"machine: {torch.cuda.device_count()} x {name}; torch {torch.__version__}, lightning {pl.__version__}, "
      f"nccl {'.'.join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else 'n/a'}")
EOF

# 2. DDP over all GPUs (NCCL; gloo in the dry run), a few steps, through both launchers.
DDP_STEPS=20
[ "$DRY" = 1 ] && DDP_STEPS=3
DDP=(+recipe=$RECIPE "${MODEL[@]}" trainer.accelerator=$ACCEL trainer.devices=$NGPU trainer.strategy=ddp
     trainer.max_steps=$DDP_STEPS trainer.val_check_interval=$DDP_STEPS trainer.limit_val_batches=2 trainer.log_every_n_steps=1
     trainer.enable_progress_bar=false log.tensorboard.enabled=false log.log_dir=$OUT/runs)
if [ "$DRY" = 0 ]; then
    # 124M shape, a small batch: this checks the collective path, not speed.
    DDP+=(model.compile=false data.micro_batch_size=4 "data.global_batch_size=$((4 * NGPU))")
fi
ddp_check() {
    local label=$1; shift
    local t0=$SECONDS
    if "$@" "${DDP[@]}" log.name="ddp_$label" > "$OUT/ddp_$label.log" 2>&1; then
        local runs; runs=$(find "$OUT/runs/ddp_$label" -mindepth 1 -maxdepth 1 -type d | wc -l)
        local logs; logs=$(find "$OUT/runs/ddp_$label" -name 'nemo_log_globalrank-*' | wc -l)
        echo "ddp ($label, $NGPU ranks): ok in $((SECONDS - t0))s; run dirs: $runs, rank log files: $logs; $(grep -m1 'final val_loss' "$OUT/ddp_$label.log")" | tee -a "$FIGURES"
    else
        echo "ddp ($label): FAILED, see $OUT/ddp_$label.log" | tee -a "$FIGURES"; tail -30 "$OUT/ddp_$label.log" >&2; exit 1
    fi
}
ddp_check expconf $PY -m expconf.train
ddp_check torchrun $PY -m torch.distributed.run --standalone --nproc_per_node="$NGPU" -m expconf.train

# 2b. FSDP2 over all GPUs: each block sharded, async sharded (DCP) checkpoints, one shard per rank.
FSDP=("${DDP[@]/trainer.strategy=ddp/trainer.strategy=fsdp}" log.ckpt.async_save=true log.name=fsdp)
[ "$DRY" = 0 ] && FSDP+=(trainer.fsdp.param_dtype=bf16 trainer.fsdp.reduce_dtype=fp32 trainer.fsdp.activation_checkpointing=true)
t0=$SECONDS
if $PY -m expconf.train "${FSDP[@]}" > "$OUT/fsdp.log" 2>&1; then
    shards=$(find "$OUT/runs/fsdp" -path '*-end.ckpt/__*_0.distcp' | wc -l)
    echo "fsdp ($NGPU ranks): ok in $((SECONDS - t0))s; shards in the -end checkpoint: $shards; $(grep -m1 'final val_loss' "$OUT/fsdp.log")" | tee -a "$FIGURES"
else
    echo "fsdp: FAILED, see $OUT/fsdp.log" | tee -a "$FIGURES"; tail -30 "$OUT/fsdp.log" >&2; exit 1
fi

# 3. Throughput of each recipe on one GPU, expconf and the raw loop interleaved in one process.
for R in "${THROUGHPUT[@]}"; do
    batch="BATCH_${R}[@]"
    $PY -m expconf.describe +recipe=$R "${MODEL[@]}" "${!batch}" trainer.accelerator=$ACCEL trainer.devices=1 \
        trainer.strategy=auto | sed "s/^/$R: /" | tee -a "$FIGURES"
    $PY -m bench.gpu_throughput --recipe $R --device $DEVICE --steps "$STEPS" --warmup $WARMUP \
        --repeats $REPEATS --out "$OUT/throughput_$R.json" "${MODEL[@]}" "${!batch}" trainer.strategy=auto \
        | sed "s/^/$R: /" | tee -a "$FIGURES"
done
echo "figures: $FIGURES (details: $OUT/throughput_*.json)"
