"""The schedule registry: what is registered, choose(), and the errors a forced schedule and
an unknown family raise."""

import pytest

import convgen
from convgen import SpecError
from convgen.codegen import generate
from convgen.lower import lower
from convgen.resources import templates_dir
from convgen.schedules import applicable, choose, names, resolve
from convgen.schedules.base import _REGISTRY


def test_every_schedule_names_an_existing_template_and_a_doc():
    assert set(names("c")) == {"reference", "blocked", "packed", "winograd", "scalar", "qpacked",
                               "qdepthwise"}
    assert set(names("cuda")) == {"direct", "tiled"}
    for schedule in _REGISTRY.values():
        assert (templates_dir() / schedule.template).is_file(), schedule.template
        assert schedule.doc


def test_the_reason_a_schedule_does_not_apply_is_the_error_it_raises():
    problem = lower(convgen.Conv2d(2, 4, 3, stride=2), (2, 9, 9))
    reason = applicable(problem, "c")["winograd"]
    assert reason and "3x3 kernel, stride 1" in reason
    with pytest.raises(SpecError) as error:
        generate(convgen.Conv2d(2, 4, 3, stride=2), (2, 9, 9), schedule="winograd")
    assert str(error.value).endswith(reason)


def test_choose_agrees_with_applies_and_falls_back_to_reference():
    for layer, shape in [(convgen.Conv2d(3, 16, 3, padding=1), (3, 32, 32)),
                         (convgen.Conv2d(4, 4, 3, groups=4), (4, 6, 6)),
                         (convgen.MaxPool2d(2, return_indices=True), (3, 8, 8)),
                         (convgen.ConvTranspose2d(2, 2, 3), (2, 5, 5)),
                         (convgen.GlobalAvgPool(), (16, 7, 7))]:
        problem = lower(layer, shape)
        chosen, reason = choose(problem, "c")
        assert applicable(problem, "c")[chosen] is None and reason
        assert resolve(problem, "c")[0].name == chosen and resolve(problem, "c")[2]
        cuda, _ = choose(problem, "cuda")
        assert applicable(problem, "cuda")[cuda] is None


def test_choose_refuses_an_unknown_target():
    with pytest.raises(SpecError, match="target='opencl' must be 'c' or 'cuda'"):
        choose(lower(convgen.MaxPool2d(2), (1, 4, 4)), "opencl")


def test_a_layer_without_a_family_is_refused_by_the_generator():
    """Today it died with an AttributeError inside codegen."""
    from convgen.cudagen import generate_cuda
    from tests.test_family import NO_FAMILY, ConvInteger1d

    layer = ConvInteger1d(1, 2, 3)
    for render in (lower, generate, generate_cuda):
        with pytest.raises(SpecError, match=NO_FAMILY):
            render(layer, (1, 5))
