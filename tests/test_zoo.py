"""The published zoo: every shipped checkpoint loads offline by name and still scores its golden kNN figure."""

from pathlib import Path

import pytest
import torch

import sslzoo
from sslzoo import cli, published, registry
from sslzoo.weights import local_hubs
from sslzoo.eval.protocols import LoadedModel, knn_eval
from sslzoo.published import TAG, zoo_table

REPO_ROOT = Path(__file__).resolve().parents[1]
ENTRIES = registry.zoo_entries()
NAMES = [f"{e['architecture']}.{e['weights']['tag']}" for e in ENTRIES]
METHODS = ("mocov3", "dino", "aps", "patchmix", "ccrop", "adclr")


SHIPPED_HUB = local_hubs.SHIPPED_HUB


@pytest.fixture(autouse=True)
def offline_with_the_shipped_hub(isolated_hub, monkeypatch):
    """The user's caches and the network are out of reach; the hub folder shipped in the package is not."""
    monkeypatch.setattr(local_hubs, "SHIPPED_HUB", SHIPPED_HUB)


def test_every_method_has_a_published_cifar10_checkpoint(capsys):
    assert sorted(registry.ARCHITECTURES[e["architecture"]].method.name for e in ENTRIES) == sorted(METHODS)
    assert cli.main(["list", "--pretrained", f"*.{TAG}"]) == 0
    assert capsys.readouterr().out.split() == sorted(NAMES)


@pytest.mark.parametrize("entry", ENTRIES, ids=NAMES)
def test_checkpoint_loads_offline_and_keeps_its_golden_knn(entry):
    name = f"{entry['architecture']}.{entry['weights']['tag']}"
    model = sslzoo.create_model(name, pretrained=True)
    assert model.sslzoo_cfg["sha256"] == entry["weights"]["sha256"]
    golden = entry["regression"]
    result = knn_eval(LoadedModel(model, name, "shipped"), golden["data"], k=(golden["k"],))
    assert abs(result["top1"][golden["k"]] - golden["top1"]) <= golden["tolerance"], (
        f"{name}: kNN@{golden['k']} on the embedded sample is {result['top1'][golden['k']]:.2f}, the published"
        f" figure is {golden['top1']:.2f}: loading, preprocessing or the weights changed."
    )


@pytest.mark.parametrize("entry", ENTRIES, ids=NAMES)
def test_registry_torch_hub_and_the_hub_folder_give_the_same_model(entry):
    name = f"{entry['architecture']}.{entry['weights']['tag']}"
    folder = SHIPPED_HUB / name
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    by_name = sslzoo.create_model(name, pretrained=True).eval()
    by_folder = sslzoo.create_model(f"local-dir:{folder}").eval()
    by_torch_hub = torch.hub.load(str(REPO_ROOT), entry["architecture"], source="local", pretrained=True).eval()
    assert by_name.pretrained_cfg["mean"] == by_folder.pretrained_cfg["mean"]
    assert by_name.pretrained_cfg["std"] == by_folder.pretrained_cfg["std"]
    with torch.no_grad():
        out = by_name(x)
        torch.testing.assert_close(by_folder(x), out, rtol=0, atol=0)
        torch.testing.assert_close(by_torch_hub(x), out, rtol=0, atol=0)


@pytest.mark.parametrize("entry", ENTRIES, ids=NAMES)
def test_every_checkpoint_has_a_card_and_beats_random_init(entry):
    name = f"{entry['architecture']}.{entry['weights']['tag']}"
    card = (REPO_ROOT / "MODEL_CARDS" / f"{name}.md").read_text(encoding="utf-8")
    assert card == (SHIPPED_HUB / name / "README.md").read_text(encoding="utf-8")
    for heading in ("Results", "Against references", "Compute", "Training run", "Limitations", "How to load"):
        assert f"## {heading}" in card
    knn20 = next(r["value"] for r in entry["weights"]["results"] if r["metric"] == "top1@k20")
    assert knn20 > entry["references"]["random_init"]["knn"]["20"]  # pre-training did something


def test_readme_zoo_table_is_generated_from_the_registry():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start, end = readme.index("<!-- zoo:start -->"), readme.index("<!-- zoo:end -->")
    assert readme[start:end].split("\n", 1)[1].strip() == zoo_table().strip(), (
        "README's zoo table is stale: run scripts/build_zoo.py (or paste sslzoo.published.zoo_table())."
    )


def test_a_tampered_shipped_checkpoint_is_refused(tmp_path, monkeypatch):
    name = NAMES[0]
    shipped = tmp_path / "shipped"
    (shipped / name).mkdir(parents=True)
    for f in (SHIPPED_HUB / name).iterdir():
        (shipped / name / f.name).write_bytes(f.read_bytes())
    weights = shipped / name / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(local_hubs, "SHIPPED_HUB", shipped)
    with pytest.raises(sslzoo.SslzooError, match="sha256"):
        sslzoo.create_model(name, pretrained=True)


def test_views_sentence_claims_a_pure_method_comparison_only_for_one_shared_base() -> None:
    shared = published.views_sentence([{"views_base": "mocov3_cifar"}] * 6)
    assert "base views (`views.base: mocov3_cifar`)" in shared and "nothing else" in shared
    for runs in ([{"views_base": None}] * 6, [{"views_base": "mocov3_cifar"}, {"views_base": "aps_cifar"}], [{}]):
        assert "its own paper's training views" in published.views_sentence(runs)


def test_views_sentence_says_when_budgets_differ_and_claims_equal_epochs_only_when_they_are() -> None:
    same = published.views_sentence([{"views_base": "mocov3_cifar", "epochs": 16, "method": m} for m in METHODS])
    assert "batch, epochs and base views" in same and "budgets differ" not in same
    runs = [{"views_base": "mocov3_cifar", "epochs": 16.0, "method": m} for m in ("mocov3", "aps", "adclr")]
    runs.append({"views_base": "mocov3_cifar", "epochs": 47.998, "method": "dino"})
    mixed = published.views_sentence(runs)
    assert "batch, epochs" not in mixed and "16 epochs (adclr, aps, mocov3); 48 epochs (dino)" in mixed
    assert "DINO family learns more slowly" in mixed
    runs[-1]["method"] = "mocov3"  # a longer run outside the DINO family gets no DINO explanation
    assert "DINO family" not in published.views_sentence(runs)


def test_zoo_table_gains_dense_columns_and_references_when_the_index_has_them(tmp_path) -> None:
    import json

    index = json.loads(registry.ZOO_INDEX.read_text(encoding="utf-8"))
    for m in index["models"]:
        m.pop("dense", None)
        for ref in m["references"].values():
            ref.pop("dense", None)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(index))
    assert "dense" not in zoo_table(plain)
    record = {"data": "cifar10-mosaic (seed 0)", "dense:linear": {"miou": 41.234, "pixel_acc": 70.0},
              "dense:nn": {"miou": 12.5, "pixel_acc": 50.0}}
    index["models"][0]["dense"] = record
    index["models"][0]["references"]["raw_pixels"]["dense"] = dict(record, **{"dense:nn": {"miou": 3.0,
                                                                                          "pixel_acc": 1.0}})
    index["models"][0]["references"]["random_init"]["dense"] = dict(record, architecture="dino_vit_micro_patch8_32")
    dense = tmp_path / "dense.json"
    dense.write_text(json.dumps(index))
    table = zoo_table(dense).splitlines()
    assert table[0].endswith("| dense:linear / dense:nn mIoU |") and table[1].count("|") == table[0].count("|")
    assert table[2].endswith("| 41.23 / 12.50 |") and table[3].endswith("| - |")  # a model without dense figures
    assert "raw pixels (8 px patches) 41.23 / 3.00" in table[-1]
    assert "random init (`dino_vit_micro_patch8_32`, seed 0) 41.23 / 12.50" in table[-1]


def test_every_card_states_what_the_whole_zoo_shared() -> None:
    """A card's limitations say what every zoo run shared (architecture, batch, views; the epochs only where one budget
    holds): a card rendered when the zoo had one budget must not keep claiming it after a longer run joined."""
    sentence = published.zoo_views_sentence(ENTRIES)
    assert ("epochs" in sentence.split(" and base views")[0]) == (
        len({round(float(e["weights_run"]["epochs"])) for e in ENTRIES}) == 1)
    for name in NAMES:
        for card in (REPO_ROOT / "MODEL_CARDS" / f"{name}.md", SHIPPED_HUB / name / "README.md"):
            assert sentence in card.read_text(encoding="utf-8"), card
