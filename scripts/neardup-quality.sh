#!/usr/bin/env bash
# Near-duplicate quality: precision and recall of the pairs idx confirms against brute-force
# Jaccard ground truth, on generated perturbations and (when ../shared/data/real is present) on
# the real ESConv dialogues, for several (hamming, blocks) settings. See docs/NEAR_DUPLICATES.md.
# Pass --full to also measure the redb table throughput at 1M fingerprints (a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--full" ]]; then
  exec cargo bench --locked --bench neardup
fi
IDX_ND_QUALITY_ONLY=1 exec cargo bench --locked --bench neardup
