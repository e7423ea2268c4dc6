"""The person model interpolated towards the base at inference (WiSE-FT style), an exploration of
issue #15 (BENCHMARKS.md "Recipe checks on the six weakest clips"): adapter outputs × α, layer
norms and the person's β linearly between the base's (β: its mean over the training frames) and
the person's. Prints the reduction of the held-out overall NME per α for the work folders of
`facetwin evaluate person CLIP --work W` (video protocol: the first 70 % trained, the last 30 % tested).

    python benchmarks/person_interpolation.py W1 [W2 ...] [--beta person]

α = 1 is the person model as shipped, α = 0 the base encoder with one fixed β (its mean);
``--beta person`` keeps the person's trained β at every α (only adapters and layer norms move)."""
import sys, json, tempfile
from pathlib import Path
from types import SimpleNamespace
import numpy as np, torch
from torch.utils.data import Subset
torch.set_num_threads(2)
from facetwin.data.prepared import PreparedDataset, load_manifest
from facetwin.evaluation import person as ev
from facetwin.models.coarse import load_coarse_model, resolve_model_file
from facetwin.models.person import fix_shape, load_person
from facetwin.training.person_stage import predict
from facetwin.training.personalize import personalize
from facetwin.cli.evaluate_person import _folds
base = resolve_model_file("default")
keep_beta = "--beta" in sys.argv and sys.argv[sys.argv.index("--beta") + 1] == "person"
dirs = [a for i, a in enumerate(sys.argv[1:], 1) if not a.startswith("--") and sys.argv[i - 1] != "--beta"]
ALPHAS = [0.0, 0.5, 0.7, 0.85, 1.0]
out = {}
for work in dirs:
    work = Path(work)
    keys = [r["key"] for r in load_manifest(work / "prepared")]
    (train_keys, test_keys), = _folds(keys, SimpleNamespace(train_fraction=0.7, input=str(work)), True)[0]
    with tempfile.TemporaryDirectory() as tmp:
        _, stage = personalize(work / "prepared", Path(tmp) / "x.facetwin", base, keys=train_keys, minutes=30, max_steps=1,
                               batch_size=4, threads=2, progress=False, work_dir=Path(tmp))
    plain = PreparedDataset(work / "prepared", 224, augment=False, preload=True)
    index = {k: i for i, k in enumerate(plain.keys)}
    test, train = Subset(plain, [index[k] for k in test_keys]), Subset(plain, [index[k] for k in train_keys])
    base_enc = load_coarse_model(base)[0].encoder
    start = torch.from_numpy(predict(stage, base_enc, train)["beta"].mean(0))
    e_base = ev.landmark_errors(*(lambda p: (p["landmarks"], p["labels"]))(predict(stage, base_enc, test)))["overall"].mean()
    row = {"base": float(e_base)}
    for a in ALPHAS:
        enc = load_coarse_model(base)[0].encoder
        base_state = {k: v.clone() for k, v in enc.state_dict().items()}
        person = load_person(work / "fold0.facetwin", enc, base, fix_identity=False)
        with torch.no_grad():
            for name, p in enc.named_parameters():
                if "adapter.up" in name:
                    p.mul_(a)
                elif name in base_state and ("norm" in name):
                    p.copy_(base_state[name] + a * (p - base_state[name]))
        beta = person.beta_mean if keep_beta else start + a * (person.beta_mean - start)
        h = fix_shape(enc, beta)
        pr = predict(stage, enc, test)
        row[a] = float(ev.landmark_errors(pr["landmarks"], pr["labels"])["overall"].mean())
        h.remove()
    red = {a: round(100 * (1 - row[a] / row["base"]), 1) for a in ALPHAS}
    print(work.name, red, flush=True)
    out[work.name] = red
print(json.dumps(out))

