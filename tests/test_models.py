"""The cell generator's models (G-VAE, clusters, CCNF) and their training loops, at toy sizes."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from hgnas_ray.errors import ConfigError, DataError
from hgnas_ray.generator.cells.zc import ZCNormalizer
from hgnas_ray.models import CCNF, GVAE, CCNFConfig, CellClusters, GVAEConfig
from hgnas_ray.models.gvae import node_feature_loss, zc_triplet_loss
from hgnas_ray.space import sample_cell
from hgnas_ray.space.decoding import decode_cell
from hgnas_ray.space.encoding import cell_to_arrays
from hgnas_ray.training import (
    CellGraphDataset,
    TrainConfig,
    gvae_latents,
    train_ccnf,
    train_gvae,
)

TINY_GVAE = GVAEConfig(hidden_dim=16, latent_dim=8, decoder_hidden=32, cond_hidden=16)
TINY_CCNF = CCNFConfig(latent_dim=4, cond_dim=2, hidden_dim=16, method="rk4", step_size=0.5)


def make_dataset(n: int = 32, space: str = "cell", labelled_every: int = 2, seed: int = 0):
    """`n` random cells; every `labelled_every`-th has a ZC vector (0: none has)."""
    rng = np.random.default_rng(seed)
    cells = [sample_cell(rng, space) for _ in range(n)]
    zc = rng.normal(size=(n, 3))
    if labelled_every == 0:
        zc[:] = np.nan
    else:
        zc[np.arange(n) % labelled_every != 0] = np.nan
    return CellGraphDataset(cells, zc)


def one_batch(dataset) -> object:
    return next(iter(DataLoader(dataset, batch_size=len(dataset))))


def gvae(seed: int = 0) -> GVAE:
    torch.manual_seed(seed)
    return GVAE(TINY_GVAE)


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


# ----------------------------------------------------------------------------------- G-VAE
def test_gvae_shapes_and_repr():
    model, batch = gvae(), one_batch(make_dataset(6))
    mu, logvar = model.encode(batch)
    adj, feats = model.decode(mu)
    assert mu.shape == logvar.shape == (6, 8)
    assert adj.shape == (6, 9, 9) and feats.shape == (6, 9, 15)
    assert model.predict_condition(mu).shape == (6, 3)
    assert batch.zc.shape == (6, 3) and batch.adj.shape == (6, 9, 9)
    assert "hidden_dim=16" in repr(model) and "latent_dim=8" in repr(model)


def test_gvae_reset_parameters_is_repeatable():
    model = gvae()
    torch.manual_seed(1)
    model.reset_parameters()
    first = params(model)
    torch.manual_seed(1)
    model.reset_parameters()
    assert all(torch.equal(a, b) for a, b in zip(first, params(model), strict=True))


def test_gvae_loss_terms_finite_and_reconstruction_decreases():
    history = []
    train_gvae(gvae(), make_dataset(32), TrainConfig(epochs=80, lr=3e-3, batch_size=32,
                                                     device="cpu"),
               callback=lambda epoch, metrics, state: history.append(metrics))
    assert set(history[0]) == {"loss", "reconstruction", "adjacency", "features", "kl",
                               "triplet", "condition"}
    assert all(np.isfinite(v) for m in history for v in m.values())
    assert history[-1]["reconstruction"] < 0.7 * history[0]["reconstruction"]
    assert history[-1]["loss"] < history[0]["loss"]


def test_unlabelled_cells_contribute_only_reconstruction_and_kl():
    model = gvae()
    model.eval()  # z = mu: the comparison below needs no noise
    terms = model(one_batch(make_dataset(8, labelled_every=0)))
    assert terms["triplet"] == 0 and terms["condition"] == 0
    torch.testing.assert_close(terms["loss"], terms["reconstruction"] + 0.1 * terms["kl"])
    terms["loss"].backward()
    for p in model.cond_head.parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) == 0
    assert torch.count_nonzero(model.mu_head.weight.grad) > 0


def test_condition_terms_ignore_unlabelled_rows():
    model = gvae()
    model.eval()
    dataset = make_dataset(12, labelled_every=2)
    assert dataset.labelled.sum() == 6
    mixed = model(one_batch(dataset))
    subset = [g for g, keep in zip(dataset.graphs, dataset.labelled, strict=True) if keep]
    only = model(next(iter(DataLoader(subset, batch_size=len(subset)))))
    torch.testing.assert_close(mixed["condition"], only["condition"])
    torch.testing.assert_close(mixed["triplet"], only["triplet"])


def test_triplet_loss_uses_closest_and_farthest_in_zc_space():
    zc = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert zc_triplet_loss(zc.clone(), zc, margin=0.1) == 0  # latent order = ZC order
    assert zc_triplet_loss(zc.flip(0) ** 3, zc, margin=0.1) > 0  # order broken
    assert zc_triplet_loss(zc[:2], zc[:2], 0.1) == 0  # fewer than 3 labelled: no triplet


@pytest.mark.parametrize("space", ["cell", "nb201"])
def test_gvae_decodes_to_valid_cells(space):
    model = gvae()
    model.eval()
    z = torch.cat([torch.randn(16, 8), 20 * torch.randn(8, 8), torch.zeros(1, 8)])
    cells = model.decode_cells(z, space)
    assert len(cells) == len(z)
    for cell in cells:
        assert cell.space == space
        cell.validate()
    mu, _ = model.encode(one_batch(make_dataset(6, space=space)))
    assert all(c.validate() for c in model.decode_cells(mu, space))


def test_gvae_rejects_mismatched_zc_dimension():
    model = GVAE(GVAEConfig(hidden_dim=8, latent_dim=4, decoder_hidden=8, cond_hidden=8,
                            cond_dim=2))
    with pytest.raises(DataError, match="cond_dim"):
        model(one_batch(make_dataset(4)))


def test_train_gvae_resume_matches_uninterrupted_run():
    dataset, config = make_dataset(24), TrainConfig(epochs=4, batch_size=8, seed=3,
                                                    device="cpu")
    states = {}
    full = gvae(0)
    final = train_gvae(full, dataset, config, lambda e, m, s: states.__setitem__(e, s))
    buffer = io.BytesIO()
    torch.save(states[2], buffer)  # checkpoints hold only weights_only-loadable values
    buffer.seek(0)
    resumed = gvae(1)
    epochs_seen = []
    again = train_gvae(resumed, dataset, config, lambda e, m, s: epochs_seen.append(e),
                       state=torch.load(buffer, weights_only=True))
    assert epochs_seen == [3, 4] and again["epoch"] == final["epoch"] == 4
    assert all(torch.equal(a, b) for a, b in zip(params(full), params(resumed), strict=True))
    assert torch.equal(again["generator"], final["generator"])


def test_gvae_latents_follow_dataset_order():
    model, dataset = gvae(), make_dataset(10)
    mu, cond = gvae_latents(model, dataset, batch_size=4, device="cpu")
    assert mu.shape == (10, 8) and cond.shape == (10, 3) and not model.training
    torch.testing.assert_close(mu[3:4], model.encode(one_batch([dataset[3]]))[0])


# ----------------------------------------------------------------------------------- CCNF
def test_ccnf_adjoint_and_direct_gradients_agree():
    config = CCNFConfig(latent_dim=3, cond_dim=2, hidden_dim=8, atol=1e-8, rtol=1e-8)
    grads = []
    for adjoint in (True, False):
        torch.manual_seed(0)
        flow = CCNF(dataclasses.replace(config, adjoint=adjoint)).double()
        z, c = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
        flow.loss(z, c, torch.Generator().manual_seed(7)).backward()
        grads.append({name: p.grad.clone() for name, p in flow.named_parameters()})
    assert grads[0]["dynamics.sqrt_end_time"].abs() > 0  # the end time learns too
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_ccnf_log_prob_of_base_samples_is_finite():
    torch.manual_seed(0)
    flow = CCNF(CCNFConfig(latent_dim=4, cond_dim=2, hidden_dim=16))  # dopri5, 1e-5
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logp = flow.log_prob(z, torch.zeros(2), torch.Generator().manual_seed(1))
    assert logp.shape == (6,) and torch.isfinite(logp).all()
    assert flow.end_time.item() == pytest.approx(0.5)


def test_ccnf_sampling_is_deterministic_under_a_seeded_generator():
    torch.manual_seed(0)
    flow = CCNF(TINY_CCNF)
    cond = torch.tensor([0.5, -1.0])
    first = flow.sample(cond, n=5, temperature=0.4, generator=torch.Generator().manual_seed(2))
    again = flow.sample(cond, n=5, temperature=0.4, generator=torch.Generator().manual_seed(2))
    other = flow.sample(cond, n=5, temperature=0.4, generator=torch.Generator().manual_seed(3))
    assert first.shape == (5, 4) and torch.isfinite(first).all()
    assert torch.equal(first, again) and not torch.equal(first, other)
    per_row = flow.sample(cond.expand(5, 2), temperature=0.4,
                          generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(per_row, first)


def test_ccnf_config_errors_name_the_fix():
    with pytest.raises(ConfigError, match="dopri5"):
        CCNF(CCNFConfig(method="nope"))
    with pytest.raises(ConfigError, match="step_size"):
        CCNF(CCNFConfig(method="rk4"))
    with pytest.raises(ConfigError, match="rademacher"):
        CCNF(CCNFConfig(trace_noise="hutch"))


def test_train_ccnf_resume_matches_uninterrupted_run():
    gen = torch.Generator().manual_seed(0)
    latents, conds = torch.randn(24, 4, generator=gen) + 1.0, torch.randn(24, 2, generator=gen)
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-2, seed=5, device="cpu")
    states, history = {}, []

    def record(epoch, metrics, state):
        states[epoch] = state
        history.append(metrics)

    torch.manual_seed(0)
    full = CCNF(TINY_CCNF)
    train_ccnf(full, latents, conds, config, record)
    torch.manual_seed(1)
    resumed = CCNF(TINY_CCNF)
    train_ccnf(resumed, latents, conds, config, state=states[1])
    assert all(torch.equal(a, b) for a, b in zip(params(full), params(resumed), strict=True))
    assert set(history[0]) == {"loss", "end_time"}
    assert all(np.isfinite(m["loss"]) for m in history)


def test_train_ccnf_rejects_non_finite_rows():
    conds = torch.zeros(4, 2)
    conds[1] = float("nan")
    with pytest.raises(DataError, match="1 of 4"):
        train_ccnf(CCNF(TINY_CCNF), torch.zeros(4, 4), conds, TrainConfig(epochs=1))


# ------------------------------------------------------------------- normaliser and clusters
def test_zc_normalizer_excludes_and_counts_nan_rows():
    zc = np.array([[1.0, 10.0], [2.0, 20.0], [np.nan, 5.0], [3.0, 30.0], [np.nan, np.nan],
                   [4.0, 40.0], [5.0, 50.0]])
    norm = ZCNormalizer().fit(zc)
    assert (norm.n_fitted, norm.n_excluded) == (5, 2)
    np.testing.assert_allclose(norm.center, [3.0, 30.0])
    np.testing.assert_allclose(norm.scale, [2.0 / 1.349, 20.0 / 1.349])
    out = norm.transform(zc)
    assert np.isnan(out[4]).all() and np.isnan(out[2, 0])
    np.testing.assert_allclose(out[3], [0.0, 0.0])
    loaded = ZCNormalizer.from_state_dict(json.loads(json.dumps(norm.state_dict())))
    np.testing.assert_array_equal(loaded.transform(zc), out)
    np.testing.assert_allclose(loaded.inverse_transform(out)[[0, 6]], zc[[0, 6]])
    with pytest.raises(DataError, match="all 1 rows"):
        ZCNormalizer().fit(np.full((1, 2), np.nan))


def test_zc_normalizer_zero_iqr_falls_back():
    norm = ZCNormalizer().fit(np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 9.0]]))
    assert np.all(norm.scale > 0)


def test_cell_clusters_round_trip_without_pickle():
    rng = np.random.default_rng(0)
    cond = np.concatenate([rng.normal(loc, 0.1, size=(40, 3)) for loc in (-2.0, 0.0, 2.0, 4.0)])
    measured = cond * 10
    measured[::7] = np.nan
    clusters = CellClusters(n_components=4, seed=0).fit(cond, measured)
    assert clusters.means.shape == (4, 3) and clusters.sizes.sum() == len(cond)
    assert sorted(clusters.sizes.tolist()) == [40, 40, 40, 40]
    np.testing.assert_allclose(np.sort(clusters.measured_means[:, 0]),
                               np.sort(clusters.means[:, 0] * 10), atol=0.2)
    state = clusters.state_dict()
    from_json = CellClusters.from_state_dict(json.loads(json.dumps(state)))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    from_torch = CellClusters.from_state_dict(torch.load(buffer, weights_only=True))
    probe = rng.normal(0, 3, size=(50, 3))
    for loaded in (from_json, from_torch):
        np.testing.assert_array_equal(loaded.predict(probe), clusters.predict(probe))
        np.testing.assert_array_equal(loaded.means, clusters.means)
        np.testing.assert_array_equal(loaded.sizes, clusters.sizes)


def test_cell_clusters_need_enough_points():
    with pytest.raises(DataError, match="32 clusters"):
        CellClusters().fit(np.zeros((10, 3)))


def test_gvae_latent_carries_the_ops_and_edges():
    """Regression: without LayerNorm in the encoder and a small initial posterior noise, the
    latent's signal drowned in the noise, KL went to 0 and op reconstruction sat at chance;
    with BCE features and no node embedding, ops and edges were learnt slowly."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cells = [sample_cell(rng) for _ in range(128)]
    dataset = CellGraphDataset(cells, rng.normal(size=(128, 3)), cond_dim=3)
    model = GVAE(GVAEConfig(hidden_dim=64, latent_dim=32, decoder_hidden=128, cond_hidden=32))
    batch = next(iter(DataLoader(dataset, batch_size=128)))
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(250):
        loss = model(batch, generator)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        adj, feats = model.decode(model.encode(batch)[0])
    x = batch.x.view(128, 9, 15)
    hits = [bool(feats[i, n, :9].argmax() == x[i, n, :9].argmax())
            for i, cell in enumerate(cells) for n in cell.used_nodes()]
    upper = torch.ones(8, 8, dtype=torch.bool).triu(1)
    edge_hits = ((adj[:, :8, :8] >= 0) == (batch.adj[:, :8, :8] > 0.5))[:, upper]
    # chance is about 0.11 for ops; collapsed 0.19, BCE features 0.63, now 1.0 (edges 0.98)
    assert np.mean(hits) > 0.9
    assert edge_hits.float().mean() > 0.9


def test_feature_loss_matches_the_decoders_used_rule():
    """A node counts as used when its best op logit is > 0 (sigmoid > 0.5), as in decode_cell."""
    cell = sample_cell(np.random.default_rng(3))
    _, feats = cell_to_arrays(cell)
    target = torch.from_numpy(feats)[None]
    perfect = (target - 0.5) * 20
    assert node_feature_loss(perfect, target) < 1e-3
    assert decode_cell(torch.zeros(9, 9), perfect[0]).ops == cell.ops
    flipped = perfect.clone()
    node = cell.used_nodes()[0]
    flipped[0, node, :9] = -10.0  # every op logit < 0: predicted unused
    assert node_feature_loss(flipped, target) > 1.0
