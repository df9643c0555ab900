"""Modules built from genotypes (ops, cells, macro networks, skeleton) and their exact costs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hgnas_ray.errors import GenotypeError, RegistryError
from hgnas_ray.nn import (
    CellModule,
    CellSkeleton,
    Cost,
    MacroNetwork,
    TaskShape,
    build_network,
    count_macs,
    count_params,
    genotype_cost,
    network_cost,
)
from hgnas_ray.nn.builder import SkeletonSize
from hgnas_ray.nn.ops import OPS, create_op
from hgnas_ray.space import MacroGenotype, Stage, sample_cell, sample_macro
from hgnas_ray.space.cell import cell_from_edges
from hgnas_ray.space.vocab import CELL_OPS, KERNELS, get_vocabulary

NB201_NODE_OPS = get_vocabulary("nb201").ops
WIDTHS = [(8, 8), (8, 16), (12, 4)]  # same width, widening, narrowing
H = W = 7  # odd, so stride 2 must round up


def single_op_cell(op: str, kernel: int, space: str = "cell"):
    """0 -> 1 (op) -> 7 (below the sampling floor of the 'cell' space, but a fine module)."""
    return cell_from_edges({1: (op, kernel)}, [(0, 1), (1, 7)], space)


def _run_forward_backward(module: nn.Module, c_in: int, c_out: int, stride: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, c_in, H, W, requires_grad=True)
    y = module(x)
    assert y.shape == (2, c_out, math.ceil(H / stride), math.ceil(W / stride))
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, param in module.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_registry_covers_both_vocabularies() -> None:
    assert set(OPS) == set(CELL_OPS) | set(NB201_NODE_OPS)


def test_unknown_op_lists_the_registry() -> None:
    with pytest.raises(RegistryError) as info:
        create_op("fancy_conv", 8, 8, 1, 3)
    message = str(info.value)
    assert "'fancy_conv'" in message
    assert all(name in message for name in OPS)


@pytest.mark.parametrize(("c_in", "c_out"), WIDTHS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("op", CELL_OPS)
def test_cell_op_forward_backward(op: str, kernel: int, stride: int, c_in: int,
                                  c_out: int) -> None:
    _run_forward_backward(create_op(op, c_in, c_out, stride, kernel), c_in, c_out, stride)
    cell = CellModule(single_op_cell(op, kernel), c_in, c_out, stride)
    assert cell.input_projection is None  # the input only feeds the op, which changes shape
    _run_forward_backward(cell, c_in, c_out, stride)


@pytest.mark.parametrize(("c_in", "c_out"), WIDTHS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("op", NB201_NODE_OPS)
def test_nb201_node_op_forward_backward(op: str, stride: int, c_in: int, c_out: int) -> None:
    kernel = get_vocabulary("nb201").allowed_kernels(op)[0]
    _run_forward_backward(create_op(op, c_in, c_out, stride, kernel), c_in, c_out, stride)
    _run_forward_backward(CellModule(single_op_cell(op, kernel, "nb201"), c_in, c_out, stride),
                          c_in, c_out, stride)


def test_ops_are_pre_activation_with_their_kernel() -> None:
    conv = create_op("conv", 4, 8, 2, 5)
    assert isinstance(conv[0], nn.ReLU)
    spatial = [m for m in conv.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size, m.stride) for m in spatial] == [((5, 5), (2, 2))]
    dil = [m for m in create_op("dil_conv", 4, 8, 1, 3).modules() if isinstance(m, nn.Conv2d)]
    assert dil[0].dilation == (2, 2) and dil[0].groups == 4 and dil[1].kernel_size == (1, 1)
    mb = [m for m in create_op("mbconv_e6", 4, 8, 1, 3).modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in mb] == [48, 48, 8] and mb[1].groups == 48
    bottleneck = [m for m in create_op("bconv_e0.25", 4, 16, 1, 3).modules()
                  if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in bottleneck] == [4, 4, 16] and bottleneck[1].groups == 1
    assert count_params(create_op("avg_pool", 8, 8, 2, 3)) == 0  # no projection needed
    assert count_params(create_op("avg_pool", 8, 16, 2, 3)) > 0


# ---------------------------------------------------------------------------- cells
RESIDUAL = cell_from_edges({1: ("conv", 3)}, [(0, 1), (1, 7), (0, 7)])


def test_cell_sums_parents_identity_residual() -> None:
    cell = CellModule(RESIDUAL, 8, 8, 1).eval()
    assert cell.input_projection is None
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(cell(x), cell.node_ops["1"](x) + x)


def test_cell_projects_the_input_when_shapes_change() -> None:
    cell = CellModule(RESIDUAL, 8, 16, 2).eval()
    assert cell.input_projection is not None
    x = torch.randn(2, 8, 7, 7)
    expected = cell.node_ops["1"](x) + cell.input_projection(x)
    torch.testing.assert_close(cell(x), expected)
    assert cell(x).shape == (2, 16, 4, 4)


def test_inner_ops_run_at_output_width_and_stride_one() -> None:
    genotype = cell_from_edges({1: ("conv", 3), 2: ("sep_conv", 5)},
                               [(0, 1), (0, 2), (1, 2), (2, 7)])
    cell = CellModule(genotype, 8, 16, 2)
    first = [m for m in cell.node_ops["1"].modules() if isinstance(m, nn.Conv2d)]
    second = [m for m in cell.node_ops["2"].modules() if isinstance(m, nn.Conv2d)]
    assert (first[0].in_channels, first[0].stride) == (8, (2, 2))
    assert (second[0].in_channels, second[0].stride) == (16, (1, 1))
    assert cell.input_projection is not None  # node 2 sums the input with node 1
    _run_forward_backward(cell, 8, 16, 2)


def test_disconnected_cell_outputs_zeros() -> None:
    empty = cell_from_edges({}, [], "nb201").validate()
    cell = CellModule(empty, 4, 8, 2)
    y = cell(torch.randn(3, 4, 7, 7))
    assert y.shape == (3, 8, 4, 4) and not y.any()


def test_random_cells_forward_backward() -> None:
    rng = np.random.default_rng(0)
    for index in range(24):
        c_in, c_out = WIDTHS[index % len(WIDTHS)]
        stride = 1 + index % 2
        cell = CellModule(sample_cell(rng), c_in, c_out, stride)
        _run_forward_backward(cell, c_in, c_out, stride)


# ---------------------------------------------------------------------------- networks
CELL = cell_from_edges({1: ("conv", 3), 2: ("sep_conv", 5)}, [(0, 1), (1, 2), (2, 7), (0, 7)])
SMALL = MacroGenotype(16, (Stage(CELL, 16, 1, 1), Stage(CELL, 32, 2, 2)), 64)


def test_macro_network_shapes() -> None:
    net = MacroNetwork(SMALL, num_classes=7)
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 7)
    assert net.forward_features(x).shape == (2, 64, 16, 16)
    assert len(net.cells) == SMALL.num_cells == 3
    assert [c.stride for c in net.cells] == [1, 2, 1]
    assert [(c.c_in, c.c_out) for c in net.cells] == [(16, 16), (16, 32), (32, 32)]
    large = MacroNetwork(SMALL, num_classes=5, input_size=96)
    assert large.stem[0].stride == (2, 2) and net.stem[0].stride == (1, 1)
    assert large(torch.randn(1, 3, 96, 96)).shape == (1, 5)
    assert large.forward_features(torch.randn(1, 3, 96, 96)).shape == (1, 64, 24, 24)
    gray = MacroNetwork(SMALL, num_classes=3, in_channels=1)
    assert gray(torch.randn(2, 1, 28, 28)).shape == (2, 3)


def test_cell_skeleton_shapes() -> None:
    net = CellSkeleton(CELL, channels=8, cells_per_stage=2, num_classes=4)
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 4)
    assert net.forward_features(x).shape == (2, 32, 8, 8)
    assert [c.stride for c in net.cells] == [1, 1, 2, 1, 2, 1]
    assert [c.c_out for c in net.cells] == [8, 8, 16, 16, 32, 32]


def test_build_network_dispatch() -> None:
    assert isinstance(build_network(SMALL), MacroNetwork)
    skeleton = build_network(CELL, TaskShape(num_classes=3), SkeletonSize(8, 1))
    assert isinstance(skeleton, CellSkeleton) and skeleton.classifier.out_features == 3
    assert len(skeleton.cells) == 3
    with pytest.raises(GenotypeError, match="cannot build"):
        build_network("|nor_conv_3x3~0|")  # type: ignore[arg-type]


def test_random_macro_networks_run() -> None:
    rng = np.random.default_rng(1)
    for _ in range(2):
        genotype = sample_macro(rng, max_stages=3, max_width=32)
        net = build_network(genotype, TaskShape(num_classes=5, input_size=16))
        out = net(torch.randn(2, 3, 16, 16))
        assert out.shape == (2, 5)
        out.sum().backward()


# ---------------------------------------------------------------------------- costs
def _flop_counter_macs(build) -> int:
    """FLOPs of torch's own counter (2 per MAC; conv and linear only here) / 2, on meta."""
    with torch.device("meta"):
        net = build()
    net.eval()  # BatchNorm is not counted; eval mode only makes it cheaper on meta
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.empty(1, 3, 32, 32, device="meta"))
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


def test_macs_of_a_hand_computed_network() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    macs = 8 * 3 * 9 * 32 * 32 + 8 * 1 * 9 * 16 * 16 + 8 * 10
    assert count_macs(net, (3, 32, 32)) == macs
    assert count_params(net) == 8 * 3 * 9 + 16 + 8 * 9 + 8 * 10 + 10
    cost = network_cost(lambda: net, (3, 32, 32))
    assert cost == Cost(count_params(net), macs)


def test_cost_units() -> None:
    cost = Cost(params=10, macs=21)
    assert cost.flops == 42
    assert cost.to_dict() == {"params": 10, "macs": 21, "flops": 42}


SKELETONS = [SkeletonSize(8, 1), SkeletonSize(16, 2)]


def _check_cell_networks(skeleton: SkeletonSize, cells: int) -> None:
    rng = np.random.default_rng(skeleton.channels)
    task = TaskShape()
    for _ in range(cells):
        cell = sample_cell(rng)
        cost = genotype_cost(cell, task, skeleton)
        assert cost.macs == _flop_counter_macs(lambda c=cell: build_network(c, task, skeleton))
        real = build_network(cell, task, skeleton)
        assert cost.params == sum(p.numel() for p in real.parameters())


@pytest.mark.parametrize("skeleton", SKELETONS)
def test_cell_network_cost_is_exact(skeleton: SkeletonSize) -> None:
    """The first 8 random cells per skeleton; the 25 of each run under -m slow."""
    _check_cell_networks(skeleton, 8)


@pytest.mark.slow
@pytest.mark.parametrize("skeleton", SKELETONS)
def test_cell_network_cost_is_exact_on_25_cells(skeleton: SkeletonSize) -> None:
    _check_cell_networks(skeleton, 25)


def _check_macro_networks(networks: int) -> None:
    rng = np.random.default_rng(0)
    task = TaskShape()
    for index in range(networks):
        genotype = sample_macro(rng, max_stages=2, max_width=64 if index % 2 else 256)
        cost = genotype_cost(genotype, task)
        flop_macs = _flop_counter_macs(lambda g=genotype: build_network(g, task))
        assert abs(cost.macs - flop_macs) <= 0.01 * flop_macs
        assert cost.macs == flop_macs  # in fact exact
        if index < 10:
            real = build_network(genotype, task)
            assert cost.params == sum(p.numel() for p in real.parameters())


def test_macro_network_cost_is_exact() -> None:
    """The first 16 random networks (half of them up to 256 channels wide); the 50 run under
    -m slow. tests/test_cost_model.py checks macro_cost against our own tracing on 36 more."""
    _check_macro_networks(16)


@pytest.mark.slow
def test_macro_network_cost_is_exact_on_50_networks() -> None:
    _check_macro_networks(50)


def test_cost_depends_on_the_task() -> None:
    base = genotype_cost(SMALL, TaskShape(num_classes=10))
    more = genotype_cost(SMALL, TaskShape(num_classes=100))
    assert more.params - base.params == 90 * (64 + 1)  # classifier weights and biases
    assert more.macs - base.macs == 90 * 64
    large = genotype_cost(SMALL, TaskShape(input_size=128))
    assert large.params == base.params and large.macs > base.macs
    assert large.macs == count_macs(build_network(SMALL, TaskShape(input_size=128)),
                                    (3, 128, 128))


def test_count_macs_leaves_the_module_alone() -> None:
    net = build_network(CELL, TaskShape(), SkeletonSize(8, 1))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    macs = count_macs(net, (3, 32, 32))
    assert macs > 0
    assert all(p.device.type == "cpu" for p in itertools.chain(net.parameters(), net.buffers()))
    assert net.training and all(m.training for m in net.modules())
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)  # still usable
    assert macs == genotype_cost(CELL, TaskShape(), SkeletonSize(8, 1)).macs


def test_count_macs_on_a_meta_module() -> None:
    with torch.device("meta"):
        net = build_network(SMALL)
    assert count_macs(net, (3, 32, 32)) == genotype_cost(SMALL).macs
    assert next(net.parameters()).device.type == "meta"
    assert not any(m._forward_hooks for m in net.modules())  # hooks removed
