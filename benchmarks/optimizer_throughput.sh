#!/usr/bin/env bash
# benchmarks/optimizer_throughput.sh [ROUNDS] [NP] [CONFIG]
#
# Samples/s of the sharded update with LAMB and LARS against AdamW on the default job: each
# round trains every optimizer once, in turn (interleaved, so the machine's drift hits all
# alike), 6 epochs each, and takes the median of epochs 2 to 6 (epoch 1 warms up). Prints each
# round's figures and ratios, then the median ratio. Needs the release build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-9}
np=${2:-2}
config=${3:-$root/configs/fashion-mnist.yaml}
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1
ddp="$root/.build/release/ddp"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
declare -A optimizers=(
    [adamw]="{type: adamw, lr: 0.001, weight_decay: 0.0001}"
    [lamb]="{type: lamb, lr: 0.001, weight_decay: 0.0001}"
    [lars]="{type: lars, lr: 0.1, weight_decay: 0.0001}"
)
order=(adamw lamb lars)
rate() {   # the median samples/s of epochs 2 to 6 in metrics.jsonl
    python3 -c 'import json,statistics,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if "samples_per_second" in l]
print("%.0f" % statistics.median(r["samples_per_second"] for r in rows[1:]))' "$1"
}
update_share() {   # the median share of an epoch the update took (optimizer and publishing), in %
    python3 -c 'import json,statistics,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if "update_seconds" in l]
print("%.1f" % (100 * statistics.median(r["update_seconds"] / r["seconds"] for r in rows[1:])))' "$1"
}
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), np=$np, $(basename "$config"), $(date -u +%F)"
declare -A ratios
for round in $(seq "$rounds"); do
    line="round $round:"
    declare -A figure=()
    for name in "${order[@]}"; do
        mpirun --oversubscribe -np "$np" "$ddp" train "$config" --quiet --overwrite --run-dir "$out/$name" \
            --set "optimizer=${optimizers[$name]}" --set training.epochs=6 --set data.test=null \
            --set early_stopping=null --set checkpoint.every_epochs=0 >/dev/null
        figure[$name]=$(rate "$out/$name/metrics.jsonl")
        line+=" $name ${figure[$name]} (update $(update_share "$out/$name/metrics.jsonl") %)"
    done
    for name in lamb lars; do
        ratio=$(python3 -c "print('%.3f' % (${figure[$name]} / ${figure[adamw]}))")
        ratios[$name]+="$ratio "
        line+=" | $name/adamw $ratio"
    done
    echo "$line"
done
blas=$(python3 -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1])][-1].get("blas_core"))' "$out/adamw/metrics.jsonl")
for name in lamb lars; do
    echo "median $name/adamw: $(python3 -c "import statistics,sys; print('%.3f' % statistics.median(float(x) for x in sys.argv[1:]))" ${ratios[$name]}) (blas_core $blas)"
done
