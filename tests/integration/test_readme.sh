#!/usr/bin/env bash
# README.md's walkthrough ("Five minutes") runs as written and prints what it shows: the ```sh
# blocks after <!-- walkthrough --> run in order in one bash shell at the top of the checkout,
# and each block's combined output must match the ```text block after <!-- walkthrough-output -->
# that follows it (line by line; "..." stands for any text). Only the ports, the tour's directory,
# HOME and the build directory are swapped for the test's own.
. "$(dirname "$0")/lib.sh"
P1=$(free_port); P2=$(free_port)
while [ "$P2" = "$P1" ]; do P2=$(free_port); done
mkdir -p "$T/home"
"$PY" - "$LC_ROOT/README.md" "$T" "$P1" "$P2" "$B" >/dev/null <<'PYEOF'
import re, sys
readme, t, p1, p2, b = sys.argv[1:]
text = open(readme).read()
blocks = re.findall(r"<!-- (walkthrough(?:-output)?) -->\n```\w*\n(.*?)```", text, re.S)
def swap(s):
    s = s.replace("8799", p1).replace("8787", p2).replace("/tmp/llmcap-walkthrough", t + "/w")
    return re.sub(r"(^|[\s(])build/", lambda m: m.group(1) + b + "/", s, flags=re.M)
n = 0
with open(t + "/driver.sh", "w") as d:
    for kind, body in blocks:
        if kind == "walkthrough":
            n += 1
            open("%s/block.%d.sh" % (t, n), "w").write(swap(body))
            d.write('source "%s/block.%d.sh" >"%s/out.%d" 2>&1\n' % (t, n, t, n))
        else:
            open("%s/want.%d" % (t, n), "w").write(swap(body))
    d.write('kill $(jobs -p) 2>/dev/null; wait 2>/dev/null\n')
print(n)
PYEOF
nblocks=$(ls "$T"/block.*.sh 2>/dev/null | wc -l)
[ "$nblocks" -ge 4 ] && ok "the README has $nblocks walkthrough blocks" || fail "walkthrough blocks: $nblocks"
(cd "$LC_ROOT" && HOME=$T/home LLMCAP_STATE_DIR= timeout 120 bash "$T/driver.sh")
for ((i = 1; i <= nblocks; i++)); do
	[ -f "$T/want.$i" ] || continue
	v=$("$PY" - "$T/want.$i" "$T/out.$i" <<'PYEOF'
import re, sys
want = open(sys.argv[1]).read().splitlines()
got = open(sys.argv[2]).read().splitlines()
def match(w, g):
    return re.fullmatch(".*".join(re.escape(x) for x in w.split("...")), g) is not None
bad = [i for i, (w, g) in enumerate(zip(want, got)) if not match(w, g)]
if len(want) != len(got) or bad:
    print("shown:\n  " + "\n  ".join(want) + "\nprinted:\n  " + "\n  ".join(got))
PYEOF
)
	[ -z "$v" ] && ok "walkthrough block $i prints what the README shows" ||
		fail "walkthrough block $i: $(head -c 1500 <<<"$v")"
done
finish
