"""Data: the Dataset container, mnist1d (generated locally), scikit-learn digits, synthetic teacher-student
regression, inputs on a circle, label noise, standardisation, and the loss / accuracy of a task."""

from tdlab.data.circle import circle_angles, circle_cosines, circle_inputs
from tdlab.data.dataset import TASKS, Dataset
from tdlab.data.loaders import classification_sample, digits, mnist1d
from tdlab.data.metrics import accuracy, half_squared_error, loss_for
from tdlab.data.registry import DATASETS, load_dataset
from tdlab.data.synthetic import TEACHERS, gaussian_linear, synthetic_regression
from tdlab.data.transforms import standardize, with_label_noise

__all__ = [
    "DATASETS",
    "TASKS",
    "TEACHERS",
    "Dataset",
    "accuracy",
    "circle_angles",
    "circle_cosines",
    "circle_inputs",
    "classification_sample",
    "digits",
    "gaussian_linear",
    "half_squared_error",
    "load_dataset",
    "loss_for",
    "mnist1d",
    "standardize",
    "synthetic_regression",
    "with_label_noise",
]
