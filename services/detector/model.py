"""The online fraud model: scores batches, learns from labels, retrains in the background.
Pure (no Kafka client).

A thin loop calls it twice: ``score(matrix)`` once per consumed batch (one vectorised
call, numpy), and ``learn(matrix, labels)`` once per batch of joined labels. Learning
is twofold, as the tutorial's PyTorch variant did it:

- online: labelled examples nudge the model in service (one SGD step per example,
  once ``step`` of them have come), so it follows drift between retrains;
- retraining: every ``retrain_every`` examples and at most every ``min_interval``
  seconds (sooner while the model is young: each time its examples have doubled), a
  fresh model is trained on the ``memory`` most recent examples, several passes over
  them, while the one in service keeps scoring: in a thread, or, in the detector, in a
  worker process of its own (``fit_worker``). The fresh model starts from a copy of
  the one in service (a learner that can, like ``SmallNet``, carries on from its
  weights), so what the stream taught before the memory's horizon is refined, not
  forgotten, and each retrain needs only a few passes. It then catches up with the
  examples that came during its training and replaces the one in service in one
  reference assignment: a batch is scored by one model or the other, never a mix, and
  the stream never waits for a fit.

Until a first model exists (it needs examples of both classes) there is no score:
``score`` returns None, and a verdict says ``"score": null``.

In a loop, with a ``Router`` that has rules and this model and a ``LabelJoin``::

    routed = router.route(records)  # scores the batch with the model in service
    joined = join.remember(routed.features)  # labels that came first
    model.learn(joined.matrix, joined.labels)
    ...
    joined = join.labels(label_values)  # a batch from the labels topic
    model.learn(joined.matrix, joined.labels)

The learner is a small neural network (``SmallNet``: scikit-learn's ``MLPClassifier``
with ``partial_fit``); ``LogisticSGD`` is the linear alternative. ``bench/model_choice.py``
measures both against River's learners, on speed and on quality.

A retrain is seconds of numerical Python. In a thread it shares the interpreter lock
with the stream (numpy's matrix products release it, the rest of a fit does not); in
the worker process it only shares the cores, at a lower priority.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from itertools import pairwise
from typing import Any, Protocol

import numpy as np
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from services.detector.features import NAMES, WIDTH
from services.detector.fit_worker import FitWorker

log = logging.getLogger("fraud.detector.model")


class Learner(Protocol):
    """What the model needs of a learning algorithm."""

    def fit(self, matrix: np.ndarray, labels: np.ndarray, start: Any = None) -> None:
        """Learn from examples, as well as they allow: from scratch, or from where
        ``start`` (a copy of the model in service, the same kind of learner) got to,
        for a learner that can; ``start`` is then this learner's to use up."""

    def partial_fit(self, matrix: np.ndarray, labels: np.ndarray) -> None:
        """Learn a little more from a few examples."""

    def proba(self, matrix: np.ndarray) -> np.ndarray:
        """Probability of fraud of each row."""

    def state(self) -> dict[str, Any]:
        """What ``load`` needs to become this learner again, JSON-ready."""

    def load(self, state: Mapping[str, Any], width: int) -> None:
        """Become the learner ``state`` describes, for rows of ``width`` figures;
        ValueError, saying why, for a state that is not one of this kind and shape."""


class LogisticSGD:
    """Logistic regression by stochastic gradient descent, on standardised inputs.

    Scoring is a matrix product and a sigmoid in numpy, which skips scikit-learn's
    per-call input checks: the rows come from ``features`` and are already sound.
    ``positive_weight`` weighs a fraud example against a legitimate one: fraud is a
    few percent of the traffic, and a model that meets it rarely learns it slowly.
    """

    kind = "logistic_sgd"

    def __init__(self, alpha: float = 1e-4, epochs: int = 5, positive_weight: float = 1.0,
                 seed: int = 0) -> None:
        self.epochs = epochs
        self.positive_weight = positive_weight
        self.scaler = StandardScaler()
        self.classifier = SGDClassifier(loss="log_loss", alpha=alpha, max_iter=epochs,
                                        tol=None, random_state=seed)

    def _weights(self, labels: np.ndarray) -> np.ndarray:
        return np.where(labels > 0, self.positive_weight, 1.0)

    def fit(self, matrix: np.ndarray, labels: np.ndarray, start: Any = None) -> None:
        """From scratch, whatever ``start``: a linear model's fit is quick and sound."""
        scaled = self.scaler.fit_transform(matrix)
        self.classifier.fit(scaled, labels, sample_weight=self._weights(labels))

    def partial_fit(self, matrix: np.ndarray, labels: np.ndarray) -> None:
        self.scaler.partial_fit(matrix)
        self.classifier.partial_fit(self.scaler.transform(matrix), labels, classes=_CLASSES,
                                    sample_weight=self._weights(labels))

    def proba(self, matrix: np.ndarray) -> np.ndarray:
        scaler, classifier = self.scaler, self.classifier
        margin = ((matrix - scaler.mean_) / scaler.scale_) @ classifier.coef_[0]
        margin += classifier.intercept_[0]
        # exp of a large negative margin overflows to inf, which is still 0 after 1/(1+inf).
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-margin))

    def state(self) -> dict[str, Any]:
        return {"learner": self.kind, **_scaler_state(self.scaler),
                "coef": self.classifier.coef_[0].tolist(),
                "intercept": float(self.classifier.intercept_[0])}

    def load(self, state: Mapping[str, Any], width: int) -> None:
        _check_kind(state, self.kind)
        coef = _array(state["coef"], "coef", (width,))
        intercept = _array(state["intercept"], "intercept", ())
        _init_classifier(self.classifier, width)
        self.classifier.coef_[0] = coef
        self.classifier.intercept_[0] = intercept
        _load_scaler(self.scaler, state, width)


class SmallNet:
    """A small neural network: two hidden layers of ReLU units, trained by Adam on
    mini-batches (scikit-learn's ``MLPClassifier`` with ``partial_fit``).

    Fraud here is not one direction in feature space: a tiny amount is suspicious in
    a burst, a large one to a new payee. A linear model has to pick; two small layers
    learn both, at a few microseconds per transaction (``bench/model_choice.py``).
    64 and 32 units: half that caught 3 points less of the fraud at the same precision
    in ``bench/quality.py``, and still costs a few microseconds per transaction.
    The inputs are standardised by statistics frozen at ``fit``: the network's weights
    are tied to that scale, so online steps must not move it. Scoring is the forward
    pass in numpy, without scikit-learn's per-call checks.
    """

    kind = "small_net"

    def __init__(self, hidden: tuple[int, ...] = (64, 32), epochs: int = 5,
                 batch: int = 500, min_steps: int = 200, resumed_epochs: int = 3,
                 seed: int = 0) -> None:
        self.epochs = epochs
        self.min_steps = min_steps
        self.resumed_epochs = resumed_epochs
        self.batch = batch
        self.scaler = StandardScaler()
        self.classifier = MLPClassifier(hidden_layer_sizes=hidden, random_state=seed)

    def fit(self, matrix: np.ndarray, labels: np.ndarray,
            start: SmallNet | None = None) -> None:
        """From scratch, or from ``start``'s weights (a trained net of the same shape):
        ``resumed_epochs`` passes then refine what it knows, where a fresh net needs
        many more to learn the rare kinds of fraud at all."""
        if self._can_resume(start, matrix.shape[1]):
            assert start is not None
            self._resume(start, matrix)
            self._passes(self.scaler.transform(matrix), labels, self.resumed_epochs,
                         warm=True)
            return
        scaled = self.scaler.fit_transform(matrix)
        # A few passes over many examples, more over a few: a young model has little to
        # learn from, and a handful of steps would leave it barely trained.
        steps_per_epoch = -(-len(labels) // self.batch)
        passes = max(self.epochs, -(-self.min_steps // steps_per_epoch))
        self._passes(scaled, labels, passes, warm=False)

    def _can_resume(self, start: object, width: int) -> bool:
        if not isinstance(start, SmallNet) or not hasattr(start.classifier, "coefs_"):
            return False
        theirs, mine = start.classifier, self.classifier
        return theirs.coefs_[0].shape[0] == width and \
            tuple(theirs.hidden_layer_sizes) == tuple(mine.hidden_layer_sizes)

    def _resume(self, start: SmallNet, matrix: np.ndarray) -> None:
        """Take ``start``'s network, with the inputs standardised anew by ``matrix``
        and its first layer rescaled to match, so that it computes exactly what
        ``start`` did: with x = m + s z = m' + s' z', the first layer's z W + b is
        z' W' + b' for W' = diag(s' / s) W and b' = b + ((m' - m) / s) W."""
        mean, scale = start.scaler.mean_, start.scaler.scale_
        self.scaler.fit(matrix)
        network = self.classifier = start.classifier
        first = network.coefs_[0]
        network.intercepts_[0] = network.intercepts_[0] + \
            ((self.scaler.mean_ - mean) / scale) @ first
        network.coefs_[0] = first * (self.scaler.scale_ / scale)[:, None]

    def _passes(self, scaled: np.ndarray, labels: np.ndarray, passes: int,
                warm: bool) -> None:
        """``passes`` over the examples, from the network's weights when ``warm``."""
        network = self.classifier
        if warm and _adam_ready(network):
            # What scikit-learn's fit does from a warm start (a fresh Adam optimiser,
            # then every pass), in numpy: the same weights, a third less time.
            network.set_params(batch_size=min(self.batch, len(labels)))
            network._optimizer = AdamOptimizer(
                network.coefs_ + network.intercepts_, network.learning_rate_init,
                network.beta_1, network.beta_2, network.epsilon)
            _adam_pass(network, scaled, labels, passes)
            network.n_iter_ = passes
            network.set_params(batch_size="auto", warm_start=False)
            return
        # One call for every pass: scikit-learn checks its input once, not once per
        # mini-batch (which cost more than the learning). Every pass runs: no early stop.
        self.classifier.set_params(max_iter=passes, batch_size=min(self.batch, len(labels)),
                                   shuffle=True, tol=0.0, n_iter_no_change=NEVER,
                                   warm_start=warm)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # all passes were asked for
            self.classifier.fit(scaled, labels)
        # Online steps come in any size, and often hold one class alone (a few labels,
        # none of them fraud): scikit-learn refuses such a step from a warm-started
        # network, which resumed retrains are.
        self.classifier.set_params(batch_size="auto", warm_start=False)

    def partial_fit(self, matrix: np.ndarray, labels: np.ndarray) -> None:
        """One pass over a few examples. Once the network has learnt (its optimiser
        exists), the pass runs in numpy here (``_adam_pass``): scikit-learn's own
        ``partial_fit`` spends most of a step of 500 checking its input."""
        if not hasattr(self.scaler, "mean_"):  # learning online from the start
            self.scaler.fit(matrix)
        scaled = (matrix - self.scaler.mean_) / self.scaler.scale_
        if _adam_ready(self.classifier):
            _adam_pass(self.classifier, scaled, labels)
        else:
            self.classifier.partial_fit(scaled, labels, classes=_CLASSES)

    def proba(self, matrix: np.ndarray) -> np.ndarray:
        layer = (matrix - self.scaler.mean_) / self.scaler.scale_
        weights, biases = self.classifier.coefs_, self.classifier.intercepts_
        for weight, bias in zip(weights[:-1], biases[:-1], strict=True):
            layer = np.maximum(layer @ weight + bias, 0.0)
        margin = (layer @ weights[-1] + biases[-1])[:, 0]
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-margin))

    def state(self) -> dict[str, Any]:
        """The input statistics and the weights. Adam's running moments are left out:
        a restored net re-estimates them within its first online steps."""
        network = self.classifier
        return {"learner": self.kind, **_scaler_state(self.scaler),
                "hidden": list(network.hidden_layer_sizes),
                "coefs": [weight.tolist() for weight in network.coefs_],
                "intercepts": [bias.tolist() for bias in network.intercepts_]}

    def load(self, state: Mapping[str, Any], width: int) -> None:
        _check_kind(state, self.kind)
        hidden = tuple(self.classifier.hidden_layer_sizes)
        if tuple(state["hidden"]) != hidden:
            raise ValueError(f"a network of {_units(state['hidden'])} units, "
                             f"not {_units(hidden)}")
        units = (width, *hidden, 1)
        layers = len(units) - 1
        if len(state["coefs"]) != layers or len(state["intercepts"]) != layers:
            raise ValueError(f"{len(state['coefs'])} layers of weights and "
                             f"{len(state['intercepts'])} of biases, not {layers}")
        coefs = [_array(state["coefs"][i], f"coefs[{i}]", shape)
                 for i, shape in enumerate(pairwise(units))]
        intercepts = [_array(state["intercepts"][i], f"intercepts[{i}]", (n,))
                      for i, n in enumerate(units[1:])]
        _init_classifier(self.classifier, width)
        self.classifier.coefs_, self.classifier.intercepts_ = coefs, intercepts
        _load_scaler(self.scaler, state, width)


def _adam_ready(network: MLPClassifier) -> bool:
    """Whether ``_adam_pass`` can take a step of ``network``: one that has learnt,
    with the settings it reproduces."""
    return (isinstance(getattr(network, "_optimizer", None), AdamOptimizer)
            and network.solver == "adam"
            and network.activation == "relu" and network.out_activation_ == "logistic"
            and not network.early_stopping)


def _adam_pass(network: MLPClassifier, scaled: np.ndarray, labels: np.ndarray,
               passes: int = 1) -> None:
    """What ``network.partial_fit(scaled, labels)`` does to the weights, without its
    checks (or, with ``passes``, a fit from a warm start once its optimiser is made
    afresh): a pass in shuffled mini-batches, each a forward pass, the gradients of
    the log loss with the L2 penalty, and a step of the network's own Adam optimiser
    (scikit-learn's ``_fit_stochastic`` and ``_backprop``, binary labels, no sample
    weights). The rows must be finite and standardised, the labels 0 or 1."""
    count = len(labels)
    size = min(200, count) if network.batch_size == "auto" else \
        int(np.clip(network.batch_size, 1, count))
    # The same draws as scikit-learn's shuffle of the indices: a permutation from the
    # generator it makes anew from ``random_state`` at every call.
    network._random_state = check_random_state(network.random_state)
    truth = np.asarray(labels, dtype=float).reshape(-1, 1)
    order = np.arange(count)
    for _ in range(passes):
        if network.shuffle:  # each pass shuffles the order of the one before
            order = order[network._random_state.permutation(count)]
        _adam_epoch(network, scaled, truth, order, size)
    network.t_ += count * passes


def _adam_epoch(network: MLPClassifier, scaled: np.ndarray, truth: np.ndarray,
                order: np.ndarray, size: int) -> None:
    """One pass of ``_adam_pass`` over the rows in ``order`` (``truth``: the labels as
    a column of floats)."""
    coefs, intercepts = network.coefs_, network.intercepts_
    params = coefs + intercepts
    count = len(truth)
    alpha, last = network.alpha, len(coefs) - 1
    for start in range(0, count, size):
        rows = order[start:start + size]
        layers = [scaled[rows]]
        for i, (weight, bias) in enumerate(zip(coefs, intercepts, strict=True)):
            layer = layers[-1] @ weight
            layer += bias
            if i < last:
                np.maximum(layer, 0, out=layer)
            else:
                expit(layer, out=layer)
            layers.append(layer)
        n = len(rows)
        delta = layers[-1] - truth[rows]
        coef_grads: list[np.ndarray] = [np.empty(0)] * len(coefs)
        intercept_grads: list[np.ndarray] = [np.empty(0)] * len(coefs)
        for i in range(last, -1, -1):
            grad = layers[i].T @ delta
            grad += alpha * coefs[i]
            grad /= n
            coef_grads[i], intercept_grads[i] = grad, np.sum(delta, axis=0) / n
            if i:
                delta = delta @ coefs[i].T
                np.copyto(delta, 0.0, where=layers[i] == 0)
        _adam_update(network._optimizer, params, coef_grads + intercept_grads)


def _adam_update(optimizer: AdamOptimizer, params: list[np.ndarray],
                 grads: list[np.ndarray]) -> None:
    """What ``optimizer.update_params(params, grads)`` does, each of its steps once
    over every parameter: the moments are kept in one array each (``ms`` and ``vs``
    are views of them), so a step is a dozen calls on a few thousand numbers, not a
    dozen for each of the network's six arrays. Each number goes through the same
    operations, in the same order, as in scikit-learn's step."""
    first, second = _flat_moments(optimizer)
    grad = np.concatenate([part.ravel() for part in grads])
    optimizer.t += 1
    beta_1, beta_2 = optimizer.beta_1, optimizer.beta_2
    first *= beta_1
    first += (1 - beta_1) * grad
    second *= beta_2
    second += (1 - beta_2) * (grad**2)
    optimizer.learning_rate = (optimizer.learning_rate_init
                               * np.sqrt(1 - beta_2**optimizer.t) / (1 - beta_1**optimizer.t))
    update = -optimizer.learning_rate * first / (np.sqrt(second) + optimizer.epsilon)
    at = 0
    for param in params:
        param += update[at:at + param.size].reshape(param.shape)
        at += param.size


def _flat_moments(optimizer: AdamOptimizer) -> tuple[np.ndarray, np.ndarray]:
    """The optimizer's moments as one array each, its ``ms`` and ``vs`` made views of
    them the first time (and again after a copy, or a step of scikit-learn's own)."""
    flat = getattr(optimizer, "_flat_moments", None)
    if flat is not None and all(m.base is flat[0] for m in optimizer.ms) and \
            all(v.base is flat[1] for v in optimizer.vs):
        return flat
    moments = []
    for parts in (optimizer.ms, optimizer.vs):
        whole = np.concatenate([part.ravel() for part in parts])
        views, at = [], 0
        for part in parts:
            views.append(whole[at:at + part.size].reshape(part.shape))
            at += part.size
        parts[:] = views
        moments.append(whole)
    optimizer._flat_moments = (moments[0], moments[1])
    return moments[0], moments[1]


def _init_classifier(classifier: Any, width: int) -> None:
    """Give a fresh scikit-learn classifier every attribute that learning sets (its
    classes, layers, optimiser) by one step on two blank rows; the caller then puts
    the weights it restores in place of that step's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.partial_fit(np.zeros((2, width)), _CLASSES, classes=_CLASSES)


def _scaler_state(scaler: StandardScaler) -> dict[str, Any]:
    return {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
            "var": scaler.var_.tolist(), "seen": int(np.max(scaler.n_samples_seen_))}


def _load_scaler(scaler: StandardScaler, state: Mapping[str, Any], width: int) -> None:
    mean, scale, var = (_array(state[name], name, (width,)) for name in ("mean", "scale", "var"))
    seen = state["seen"]
    if (scale <= 0).any() or (var < 0).any() or not isinstance(seen, int) or seen < 1:
        raise ValueError("input statistics out of range")
    scaler.mean_, scaler.scale_, scaler.var_ = mean, scale, var
    scaler.n_samples_seen_, scaler.n_features_in_ = np.int64(seen), width


def _check_kind(state: Mapping[str, Any], kind: str) -> None:
    if state["learner"] != kind:
        raise ValueError(f"a {state['learner']!r} learner, not {kind!r}")


def _array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as an array of finite floats of ``shape``; ValueError if it is not."""
    array = np.asarray(value, dtype=float)
    if array.shape != shape:
        raise ValueError(f"{name}: numbers of shape {array.shape}, not {shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: numbers that are not finite")
    return array


def _units(hidden: Any) -> str:
    return ", ".join(str(n) for n in hidden)


_CLASSES = np.array([0, 1])
SNAPSHOT_FORMAT = 1  # of ``OnlineModel.snapshot``; a detector refuses any other
CATCH_UP_ROUNDS = 4  # steps in the worker after a fit, each on what came meanwhile
NEVER = 2**31 - 1  # passes without improvement before scikit-learn would stop early


class _Examples:
    """The most recent labelled examples, in a ring of fixed size, and how many came."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.matrix = np.zeros((capacity, WIDTH))
        self.labels = np.zeros(capacity, dtype=np.int8)
        self.seen = 0  # examples ever added

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def add(self, matrix: np.ndarray, labels: np.ndarray) -> None:
        extra = len(labels) - self.capacity
        if extra > 0:  # only the newest fit; the others count as come and gone
            matrix, labels = matrix[extra:], labels[extra:]
            self.seen += extra
        at = self.seen % self.capacity
        first = min(len(labels), self.capacity - at)
        self.matrix[at:at + first], self.labels[at:at + first] = matrix[:first], labels[:first]
        rest = len(labels) - first
        self.matrix[:rest], self.labels[:rest] = matrix[first:], labels[first:]
        self.seen += len(labels)

    def since(self, seen: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the examples added after the ``seen``-th (those still kept), oldest
        first."""
        count = min(self.seen - seen, len(self))
        order = (np.arange(self.seen - count, self.seen)) % self.capacity
        return self.matrix[order], self.labels[order]

    def positives(self) -> int:
        return int(self.labels[: len(self)].sum())


class OnlineModel:
    """Scores, learns online, and retrains then swaps in the background. See the module.

    ``version`` counts the models put in service (0: none yet) and ``trained_at`` is
    when the one in service was (``clock`` time, seconds), for the console to show the
    version and age. With ``background=False`` a retrain runs in the caller's thread,
    which a test or a bench that wants determinism may prefer.
    """

    def __init__(self, learner: Callable[[], Learner] = SmallNet, memory: int = 50_000,
                 retrain_every: int = 10_000, min_examples: int = 200,
                 background: bool = True, clock: Callable[[], float] = time.time,
                 min_interval: float = 10.0, step: int = 500,
                 fit_in_process: bool = False) -> None:
        if memory < 1 or retrain_every < 1 or min_examples < 1 or step < 1 \
                or min_interval < 0:
            raise ValueError(f"invalid model settings: memory {memory}, retrain every "
                             f"{retrain_every} and {min_interval} s, at least "
                             f"{min_examples} examples, steps of {step}")
        # One BLAS thread for the whole process: a detector is one process per core,
        # and the products here are small; extra BLAS threads spin on cores that other
        # detectors (or the retrain) need, and make scoring slower, not faster.
        threadpool_limits(1)
        self.new_learner = learner
        self.retrain_every = retrain_every
        self.min_examples = min_examples
        # A grown model retrains at most every ``min_interval`` seconds (``clock``): at
        # 10,000 labels a second, every 10,000 examples would mean a fit every second.
        self.min_interval = min_interval
        # Online steps wait for ``step`` examples: scikit-learn's checks cost as much
        # as a step of a few hundred, and labels come a few dozen per poll.
        self.step = step
        self.background = background
        self.clock = clock
        # Background fits in a worker process (fit_worker), not a thread of this one.
        self.fitter: FitWorker | None = FitWorker() if fit_in_process else None
        if self.fitter is not None:
            self.fitter.start()
        self.version = 0
        self.trained_at: float | None = None
        self.restored = False  # the model in service came from a snapshot (``restore``)
        self.revision = 0  # counts what changed the model in service: swaps, online steps
        self._grown = False  # a restored model retrains as a grown one
        self.failures = 0  # retrains and online steps that raised; the model serves on
        self._current: Learner | None = None
        self._examples = _Examples(memory)
        self._trained_upto = 0  # examples seen when the last retrain started
        self._retrained_at = -math.inf  # ``clock`` when the last retrain started
        self._stepped_upto = 0  # examples the model in service has learnt online
        self._closed = False
        self._step_failures = 0  # online steps that raised, for a log that cannot flood
        # Held while examples are added and the model in service learns from them, and
        # by a retrain while it catches up and swaps: no example is learnt by one model
        # and then lost by the swap. Scoring never takes it.
        self._lock = threading.Lock()
        self._retraining: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        """Whether a model is in service (before that, ``score`` gives None)."""
        return self._current is not None

    def age(self) -> float | None:
        """Seconds since the model in service was trained; None without one."""
        return None if self.trained_at is None else max(0.0, self.clock() - self.trained_at)

    def score(self, matrix: np.ndarray) -> np.ndarray | None:
        """The probability of fraud of every row, in one call; None until a first model."""
        current = self._current  # one read: a swap in between changes nothing for this batch
        if current is None or len(matrix) == 0:
            return None if current is None else np.zeros(0)
        return current.proba(matrix)

    def learn(self, matrix: np.ndarray, labels: np.ndarray) -> None:
        """Learn from labelled rows (label 1: fraud), and start a retrain when due."""
        if len(labels) == 0:
            return
        labels = np.asarray(labels, dtype=np.int8)
        with self._lock:
            self._examples.add(matrix, labels)
            current = self._current
            if current is not None and self._examples.seen - self._stepped_upto >= self.step:
                matrix, labels = self._examples.since(self._stepped_upto)
                self._stepped_upto = self._examples.seen
                try:
                    current.partial_fit(matrix, labels)
                    self.revision += 1
                except Exception:  # a refused step must not stop the stream; its
                    self.failures += 1  # examples stay for the next retrain
                    self._step_failures += 1
                    if self._step_failures in (1, 10, 100) or not self._step_failures % 1000:
                        log.exception("online step %d failed; model version %d serves on",
                                      self._step_failures, self.version)
        if self._due():
            self.retrain()

    def _due(self) -> bool:
        examples = self._examples
        if self._current is None:  # a first model as soon as there is something to learn
            positives = examples.positives()
            return len(examples) >= self.min_examples and 0 < positives < len(examples)
        # A young model retrains each time its examples have doubled, then every
        # ``retrain_every``: the first model learnt from a few hundred examples, and
        # should not serve until ten thousand more have come.
        due = self.retrain_every if self._grown else \
            min(self.retrain_every, max(self._trained_upto, self.min_examples))
        if due == self.retrain_every and \
                self.clock() - self._retrained_at < self.min_interval:
            return False
        return examples.seen - self._trained_upto >= due

    @property
    def retraining(self) -> bool:
        thread = self._retraining
        return thread is not None and thread.is_alive()

    def retrain(self) -> bool:
        """Train a fresh model on the recent examples and swap it in; False when a
        retrain is already under way or there is nothing to learn from yet."""
        if self.retraining or self._closed:
            return False
        examples = self._examples  # this thread is the only one that adds to them
        if not 0 < examples.positives() < len(examples):  # a classifier needs both classes
            return False
        self._trained_upto = examples.seen
        self._retrained_at = self.clock()
        if not self.background:
            self._train_and_swap()
            return True
        self._retraining = threading.Thread(target=self._train_and_swap,
                                            name="model-retrain", daemon=True)
        self._retraining.start()
        return True

    def _train_and_swap(self) -> None:
        try:
            # The examples, copied here rather than in the caller's thread (the stream's).
            with self._lock:
                matrix, labels = self._examples.since(0)
                upto = self._examples.seen
                # What the retrain starts from: the model in service as of these
                # examples (it goes on learning online meanwhile, so a copy).
                try:
                    start = copy.deepcopy(self._current)
                except (TypeError, copy.Error):  # a learner that cannot be copied
                    start = None  # trains from scratch
            fitter = self.fitter if self.background else None
            if fitter is None:
                fresh = self.new_learner()
                fresh.fit(matrix, labels, start)
            else:
                fresh = fitter.fit(self.new_learner, matrix, labels, start)
                # What came during the fit is learnt in the worker too, while more comes,
                # so that the lock (and this process's interpreter) is held below for a
                # step of the last few only.
                for _ in range(CATCH_UP_ROUNDS):
                    with self._lock:
                        late_matrix, late_labels = self._examples.since(upto)
                        if len(late_labels) <= self.step:
                            break
                        upto = self._examples.seen
                    fresh = fitter.step(fresh, late_matrix, late_labels)
            with self._lock:
                late_matrix, late_labels = self._examples.since(upto)
                if len(late_labels):
                    fresh.partial_fit(late_matrix, late_labels)
                self.trained_at = self.clock()
                self.version += 1
                self.revision += 1
                self.restored = False
                self._current = fresh  # the swap
                self._stepped_upto = self._examples.seen
        except Exception:  # a failed fit must not stop the stream; the old model stays
            if self._closed:  # closing abandons a fit under way (FitWorkerGone)
                return
            self.failures += 1
            log.exception("retraining the model failed; version %d stays", self.version)

    def close(self) -> None:
        """Stop retraining: a fit under way in the worker process is abandoned."""
        self._closed = True
        if self.fitter is not None:
            self.fitter.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a retrain under way; whether none is running any more."""
        thread = self._retraining
        if thread is not None:
            thread.join(timeout)
        return not self.retraining

    def snapshot(self) -> dict[str, Any] | None:
        """The model in service, JSON-ready, for a detector that starts later to score
        with from its first batch (``restore``); None before a first model."""
        with self._lock:  # not in the middle of an online step or a swap
            current = self._current
            if current is None:
                return None
            return {"format": SNAPSHOT_FORMAT, "version": self.version,
                    "trained_at": self.trained_at, "features": list(NAMES),
                    "learner": current.state()}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Serve the model of ``snapshot``, with its version and training time. It
        retrains as a grown model does, once ``retrain_every`` examples have come: a
        few hundred would be too few to refine it with. ValueError, saying why, for
        a snapshot this model cannot take (another format, other features, another
        kind or shape of learner); the model is then unchanged."""
        try:
            if snapshot["format"] != SNAPSHOT_FORMAT:
                raise ValueError(f"format {snapshot['format']!r}, not {SNAPSHOT_FORMAT}")
            if snapshot["features"] != list(NAMES):
                raise ValueError("trained on other features than this detector's")
            version, trained_at = snapshot["version"], snapshot["trained_at"]
            if not isinstance(version, int) or version < 1 or \
                    not isinstance(trained_at, int | float):
                raise ValueError(f"version {version!r} trained at {trained_at!r}")
            learner = self.new_learner()
            learner.load(snapshot["learner"], WIDTH)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a model snapshot ({type(exc).__name__}: {exc})") from None
        with self._lock:
            self._current, self.version, self.trained_at = learner, version, float(trained_at)
            self.restored = self._grown = True
            self.revision += 1
            self._stepped_upto = self._examples.seen

    def status(self) -> dict[str, Any]:
        """What a heartbeat says about the model."""
        age = self.age()
        return {"version": self.version, "trained_at": self.trained_at,
                "age_s": None if age is None else round(age, 1),
                "restored": self.restored, "examples": self._examples.seen,
                "retraining": self.retraining, "failures": self.failures}
