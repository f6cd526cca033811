"""Corpus BLEU-4 and ROUGE-L references for tests/unit/eval/test_text_metrics.cpp.

Reads a JSON file {"hyps": [[tok, ...], ...], "refs": [[[tok, ...], ...], ...],
"rouge": [[pred, [ref, ...]], ...]} and prints a JSON object with NLTK's corpus_bleu (no
smoothing, weights 1/4 each: the definition cts's BleuSmoothing::None follows) and ROUGE-L
F-measures computed here from their textbook definition (a dynamic-programming LCS written
independently of cts's, on NLTK-free lower-case alphanumeric tokens)."""
import json
import re
import sys

from nltk.translate.bleu_score import corpus_bleu


def lcs(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def rouge_l(pred, refs):
    p = re.findall(r"[a-z0-9]+", pred.lower())
    best = 0.0
    for ref in refs:
        r = re.findall(r"[a-z0-9]+", ref.lower())
        if not p or not r:
            continue
        n = lcs(p, r)
        if n == 0:
            continue
        prec, rec = n / len(p), n / len(r)
        best = max(best, 2 * prec * rec / (prec + rec))
    return best


case = json.load(open(sys.argv[1]))
out = {"bleu": corpus_bleu(case["refs"], case["hyps"]), "rouge": [rouge_l(p, r) for p, r in case["rouge"]]}
print(json.dumps(out))
