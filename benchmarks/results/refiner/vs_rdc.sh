#!/bin/bash
# Writes vs_rdc.md: the refined standard files against the .rdc codec's refined decode and the classical anchors.
# Run from the repository root: bash benchmarks/results/refiner/vs_rdc.sh
out=benchmarks/results/refiner/vs_rdc.md
{
echo "# A refined standard file against the .rdc codec's refined decode"
echo
echo "The same images, metrics and patch-FID protocol in both runs (Kodak: all 24; BSDS: the first 24 test photos):"
echo "\`benchmarks/run.py\` for the .rdc codec and the classical anchors at target rates, \`benchmarks/refiner.py\` for"
echo "each standard codec's quality ladder, plain and refined. BD-rate: negative = the first curve needs fewer bits"
echo "than the second at equal quality (LPIPS entered as −LPIPS). Written by \`bash $(dirname $out)/vs_rdc.sh\`."
for set in kodak:benchmarks/results/results.json:benchmarks/results/refiner/refiner.json \
           bsds_test:benchmarks/results/bsds_test/results.json:benchmarks/results/refiner_bsds/refiner.json; do
  IFS=: read -r name a b <<< "$set"
  cmd="rdc bdrate $a $b | grep -E '^(rdc-bsds|jpeg|webp|avif)/refined vs (rdc-bsds/refined|avif|webp):'"
  printf '\n## %s\n\n`%s`\n\n```\n' "$name" "$cmd"
  eval "$cmd"
  echo '```'
done
} > $out
