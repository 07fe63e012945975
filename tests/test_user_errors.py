"""Mistakes a newcomer makes get one line that names their input."""

import numpy as np
import pytest

import chainrule as cr


@pytest.fixture
def data(rng):
    return rng.normal(size=(20, 4)), np.arange(20) % 3


def test_a_class_instead_of_an_instance_says_pass_an_instance(data):
    X, y = data
    model = cr.mlp(4, 8, 3, seed=0)
    with pytest.raises(TypeError, match=r"^fit: the loss is the class SoftmaxCrossEntropy; "
                                        r"pass an instance: SoftmaxCrossEntropy\(\)$"):
        cr.fit(model, cr.SoftmaxCrossEntropy, cr.Adam(), X, y, verbose=0)
    with pytest.raises(TypeError, match=r"^fit: the optimizer is the class Adam; pass an "
                                        r"instance: Adam\(\)$"):
        cr.fit(model, cr.SoftmaxCrossEntropy(), cr.Adam, X, y, verbose=0)
    with pytest.raises(TypeError, match=r"evaluate: the loss is the class CrossEntropy"):
        cr.evaluate(model, cr.CrossEntropy, X, y)


def test_labels_beyond_the_outputs_show_the_offending_values(rng):
    X, y = rng.normal(size=(24, 4)), np.arange(24) % 12
    with pytest.raises(ValueError, match=r"^the network has 10 outputs but labels \[10, 11\] "
                                         r"are outside 0\.\.9$"):
        cr.fit(cr.mlp(4, 8, 10), cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X, y, verbose=0)
    words = np.array([f"w{i:02d}" for i in range(24)])
    with pytest.raises(ValueError, match=r"but the labels have 24 distinct values: "
                                         r"\['w00', 'w01', 'w02', 'w03', 'w04', …, "
                                         r"'w19', 'w20', 'w21', 'w22', 'w23'\]"):
        cr.fit(cr.mlp(4, 8, 3), cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X, words, verbose=0)


def test_fit_names_the_scaling_argument_and_its_choices(data):
    X, y = data
    with pytest.raises(ValueError, match=r"^fit: scaling must be None, 'standard' or 'minmax'; "
                                         r"got scaling='std'$"):
        cr.fit(cr.mlp(4, 8, 3), cr.SoftmaxCrossEntropy(), cr.SGD(0.1), X, y, scaling="std",
               verbose=0)


@pytest.mark.parametrize(("name", "meant"), [("digit", "digits"), ("Iris", "iris"),
                                             ("breast-cancer", "breast_cancer"),
                                             ("mnist", "mnist-5k")])
def test_a_misspelt_dataset_name_gets_a_suggestion(name, meant):
    with pytest.raises(ValueError, match=rf"^no dataset or file '{name}'; did you mean "
                                         rf"'{meant}'\? \(datasets: digits, iris, wine, "
                                         r"breast_cancer, mnist-5k\)$"):
        cr.datasets.load(name)
    with pytest.raises(ValueError, match="expected a dataset name"):
        cr.datasets.load("cifar")  # nothing close: the full list of what load accepts
