#!/usr/bin/env bash
# Prints a markdown section comparing two reports written by `bench/compare.sh`: the melody
# figure and the melody ÷ floor ratio of every scenario row, before and after.
#
#   bash bench/before_after.sh OLD_REPORT NEW_REPORT >> NEW_REPORT
#
# compare.sh does this by itself with the report it replaces (or with PREVIOUS=FILE).
set -euo pipefail
export LC_ALL=C
old=$1 new=$2
field() { sed -n "s/^- $1: //p" "$2" | head -1; }
commit_note=${BEFORE_LABEL:-}
echo
echo "## Before and after"
echo
echo "Against the report this one replaced (${commit_note:+$commit_note; }run $(field Date "$old") with $(field Command "$old")). The two come from different runs, possibly with other durations, on a machine whose speed drifts: compare the ratios rather than the raw figures."
echo
echo "| scenario | melody before | melody after | ratio before | ratio after |"
echo "|---|---:|---:|---:|---:|"
# Table rows are "| scenario | melody | floor | ratio | node |"; keep the first table only.
rows() { awk -F' \\| ' '/^\| scenario \| melody \| floor/ {on=1; next} on && /^\|---/ {next} on && /^\| / {sub(/^\| /, ""); print $1 "\t" $2 "\t" $4; next} on {exit}' "$1"; }
join -t $'\t' -j1 <(rows "$old" | sort -t $'\t' -k1,1) <(rows "$new" | sort -t $'\t' -k1,1) |
    awk -F'\t' '{print $1 "\t" $2 "\t" $4 "\t" $3 "\t" $5}' >/tmp/before_after.$$
# Keep the new report's order.
while IFS=$'\t' read -r scenario _ _; do
    awk -F'\t' -v s="$scenario" '$1 == s {printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5}' /tmp/before_after.$$
done < <(rows "$new")
rm -f /tmp/before_after.$$
