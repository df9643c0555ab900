"""Zero-cost proxies: registry, score() contract, and invariances the definitions imply.

Tiny CNNs on 8x8 inputs, batches of 12; every registered proxy is parametrized."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hgnas_ray.errors import ConfigError, DataError, RegistryError
from hgnas_ray.proxies import Proxy, ProxyResult, available_proxies, get_proxy, score
from hgnas_ray.proxies import registry as proxy_registry

ALL = available_proxies()
EXPECTED = {"zico", "zen", "naswot", "nwot", "jacov", "snip", "snip_snr", "synflow",
            "grad_norm", "tcet", "params", "macs"}


class TinyNet(nn.Sequential):
    """conv-BN-ReLU x 2, global pool, linear: (N, 3, 8, 8) -> (N, classes)."""

    def __init__(self, width: int = 8, classes: int = 4) -> None:
        super().__init__(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes),
        )


class TinyNetWithFeatures(TinyNet):
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in list(self)[:6]:
            x = layer(x)
        return x


class FunctionalReluNet(nn.Module):
    """No nn.ReLU modules: naswot cannot hook it, nwot can."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


class BrokenNet(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this network is broken")


def make_net(seed: int = 0, cls: type[nn.Module] = TinyNet, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return cls(**kwargs)


def make_batch(seed: int, n: int = 12, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.arange(n) % classes


BATCHES = [make_batch(1), make_batch(2)]


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- registry ------------------------------------------------------------------------------

def test_registry_holds_every_proxy() -> None:
    assert set(ALL) == EXPECTED
    for name in ALL:
        proxy = get_proxy(name)
        assert proxy.name == name and proxy.description


def test_unknown_proxy_lists_valid_names() -> None:
    with pytest.raises(RegistryError, match="unknown proxy 'zicoo'.*zico"):
        get_proxy("zicoo")
    with pytest.raises(RegistryError, match="valid names"):
        score(make_net(), BATCHES, ["snip", "nope"])


def test_register_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        proxy_registry.register_proxy(get_proxy("snip"))


# --- the score() contract, for every registered proxy ---------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_proxy_finite_deterministic_and_model_untouched(name: str) -> None:
    model = make_net().eval()  # eval: the copy's train mode must not leak back
    before = snapshot(model)
    rng_before = torch.get_rng_state()
    first = score(model, BATCHES, [name], seed=3)[name]
    second = score(model, BATCHES, name, seed=3)[name]
    assert isinstance(first, ProxyResult)
    assert first.status == "ok", first.message
    assert math.isfinite(first.value) and first.seconds >= 0
    assert second.value == first.value
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_shared_passes_give_the_same_values_as_separate_runs() -> None:
    model = make_net()
    together = score(model, BATCHES, ALL, seed=5)
    for name in ALL:
        alone = score(model, BATCHES, [name], seed=5)[name]
        assert alone.value == pytest.approx(together[name].value, rel=1e-9), name


def test_zen_depends_on_seed_not_on_weights() -> None:
    a = score(make_net(0), BATCHES, ["zen"], seed=0)["zen"].value
    b = score(make_net(1), BATCHES, ["zen"], seed=0)["zen"].value  # weights are re-drawn
    c = score(make_net(0), BATCHES, ["zen"], seed=1)["zen"].value
    assert a == b and a != c


def test_zen_forward_features_matches_pool_hook_fallback() -> None:
    plain = make_net(0, TinyNet)
    with_features = make_net(0, TinyNetWithFeatures)
    assert score(plain, BATCHES, ["zen"])["zen"].value == pytest.approx(
        score(with_features, BATCHES, ["zen"])["zen"].value, rel=1e-6)


def test_zico_splits_a_single_batch_in_halves() -> None:
    x, y = make_batch(7, n=12)
    model = make_net()
    one = score(model, [(x, y)], ["zico"])["zico"].value
    halves = score(model, [(x[:6], y[:6]), (x[6:], y[6:])], ["zico"])["zico"].value
    assert one == pytest.approx(halves, rel=1e-9)


# --- invariances -----------------------------------------------------------------------------

def test_all_zero_network_has_zero_synflow_snip_and_grad_norm() -> None:
    model = make_net()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    results = score(model, BATCHES, ["synflow", "snip", "grad_norm"])
    for name, result in results.items():
        assert result.status == "ok" and result.value == 0.0, name


def test_params_grows_with_width() -> None:
    counts = [score(make_net(width=w), BATCHES, ["params"])["params"].value for w in (4, 8, 16)]
    assert counts[0] < counts[1] < counts[2]
    assert counts[1] == sum(p.numel() for p in make_net(width=8).parameters())


def test_macs_and_params_match_hand_count() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 5))
    results = score(model, BATCHES, ["macs", "params"])
    # conv: 4*8*8 outputs x 3*3*3 MACs each; linear: 4*5
    assert results["macs"].value == 4 * 8 * 8 * 27 + 4 * 5
    assert results["params"].value == (4 * 27 + 4) + (4 * 5 + 5)


def test_identical_images_make_the_code_kernel_singular() -> None:
    x, y = make_batch(3)
    same = x[:1].expand_as(x).clone()
    results = score(make_net(), [(same, y)], ["naswot", "nwot", "tcet"])
    for name, result in results.items():  # log det of a rank-1 kernel: -inf
        assert result.status == "nonfinite" and math.isnan(result.value), name
        assert result.message


def test_more_distinct_images_do_not_lower_naswot() -> None:
    x, y = make_batch(3)
    half_same = torch.cat([x[:6], x[:6]])
    distinct = score(make_net(), [(x, y)], ["naswot"])["naswot"]
    dup = score(make_net(), [(half_same, y)], ["naswot"])["naswot"]
    assert distinct.status == "ok" and dup.status == "nonfinite"


# --- failures are reported, not raised --------------------------------------------------------

def test_model_that_fails_to_run_makes_every_proxy_an_error() -> None:
    results = score(make_net(cls=BrokenNet), BATCHES, ALL)
    assert set(results) == set(ALL)
    for result in results.values():
        assert result.status == "error" and math.isnan(result.value)
        assert "this network is broken" in result.message


def test_one_failing_proxy_does_not_stop_the_others() -> None:
    results = score(make_net(cls=FunctionalReluNet), BATCHES, ["naswot", "nwot", "snip"])
    assert results["naswot"].status == "error" and "nn.ReLU" in results["naswot"].message
    assert results["nwot"].ok and results["snip"].ok


def test_out_of_memory_and_nonfinite_are_statuses(monkeypatch: pytest.MonkeyPatch) -> None:
    def oom(ctx):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setitem(proxy_registry._PROXIES, "oom",
                        Proxy("oom", oom, frozenset({"forward"}), "raises OOM"))
    monkeypatch.setitem(proxy_registry._PROXIES, "inf",
                        Proxy("inf", lambda ctx: math.inf, frozenset(), "infinite"))
    results = score(make_net(), BATCHES, ["oom", "inf", "snip"])
    assert results["oom"].status == "error" and "out of memory" in results["oom"].message
    assert results["inf"].status == "nonfinite" and math.isnan(results["inf"].value)
    assert results["snip"].ok


# --- input validation -------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [torch.randn(12, 3, 8), torch.ones(12, 3, 8, 8, dtype=torch.int64),
                                 torch.randn(0, 3, 8, 8)])
def test_malformed_images_are_a_data_error(bad: torch.Tensor) -> None:
    with pytest.raises(DataError, match=r"\(N, C, H, W\).*got"):
        score(make_net(), [(bad, torch.zeros(len(bad), dtype=torch.long))], ["naswot"])


def test_bad_labels_and_names_are_typed_errors() -> None:
    x, y = make_batch(1)
    with pytest.raises(DataError, match="need labels"):
        score(make_net(), [x], ["snip"])
    with pytest.raises(DataError, match="at least 2 classes"):
        score(make_net(), [(x, torch.zeros(12, dtype=torch.long))], ["grad_norm"])
    with pytest.raises(DataError, match="y must be integer labels"):
        score(make_net(), [(x, y[:5])], ["snip"])
    with pytest.raises(DataError, match="one batch of 1"):
        score(make_net(), [(x[:1], y[:1])], ["zico"])
    with pytest.raises(ConfigError, match="no proxy names"):
        score(make_net(), [(x, y)], [])


def test_accepts_a_pair_a_loader_list_or_bare_images() -> None:
    x, y = make_batch(1)
    model = make_net()
    pair = score(model, (x, y), ["snip"])["snip"].value
    assert score(model, [x, y], ["snip"])["snip"].value == pair  # a DataLoader's [x, y]
    assert score(model, x, ["nwot"])["nwot"].ok  # labels not needed


# --- real networks of the package, and devices --------------------------------------------------

def test_every_proxy_runs_on_a_small_nb201_network() -> None:
    nb201 = pytest.importorskip("hgnas_ray.nn.nb201")
    torch.manual_seed(0)
    model = nb201.Nb201Network(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|"
        "avg_pool_3x3~2|", num_classes=4, channels=4, cells_per_stage=1)
    results = score(model, BATCHES, ALL)
    assert all(r.ok for r in results.values()), {k: r.message for k, r in results.items()}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    # loose: cuDNN may run convolutions in TF32, and binary codes near 0 may flip
    cpu = score(make_net(), BATCHES, ALL)
    gpu = score(make_net(), BATCHES, ALL, device="cuda")
    for name in ALL:
        assert gpu[name].ok, gpu[name].message
        assert gpu[name].value == pytest.approx(cpu[name].value, rel=2e-2, abs=1e-3), name
