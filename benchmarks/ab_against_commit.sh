#!/usr/bin/env bash
# Same-machine, same-sitting A/B of the speed benchmarks: the last landed commit (old) against this branch (new).
set -u
OLD=$1 NEW=$2 OUT=$3  # OLD: a checkout of the commit to compare against
mkdir -p $OUT
for round in 1 2; do
  for side in old new; do
    dir=$OLD; [ $side = new ] && dir=$NEW
    cd $dir
    PYTHONPATH=$dir python benchmarks/offpolicy_speed.py --env Breakout --seconds 20 --skip-vector > $OUT/dqn_breakout_${side}_$round.json 2>/dev/null
    PYTHONPATH=$dir python benchmarks/onpolicy_speed.py --agent ppo --env HalfCheetah --seconds 20 > $OUT/ppo_cheetah_${side}_$round.json 2>/dev/null
    PYTHONPATH=$dir python benchmarks/offpolicy_speed.py --agent sac --env HalfCheetah --seconds 20 --learning-starts 2000 --skip-vector > $OUT/sac_cheetah_${side}_$round.json 2>/dev/null
  done
done
