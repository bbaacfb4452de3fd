"""Run settings: one flat dataclass, loadable from TOML, overridable by flags; which settings each
loss and model uses. Values are coerced, and files read and written, by
:mod:`ssmrec.train.config_io`."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ssmrec.data.config import DataConfig
from ssmrec.errors import ConfigError  # re-exported
from ssmrec.train.config_io import coerce

# the settings only some losses / models use (the others ignore them); a loss or model missing
# here uses none of them
LOSS_SETTINGS: dict[str, set[str]] = {
    "ssm": {"tau", "similarity", "mask_duplicates", "mask_seen", "extra_negatives", "negative_beta", "logq",
            "negatives"},
    "softmax": {"tau", "similarity"},
    "bpr": {"similarity", "negatives"},
    "bce": {"similarity", "negatives"},
    "ccl": {"negatives", "margin", "neg_weight"},
}
# the in-batch losses after the study share SSM's candidates; their own parameters are loss_params
_IN_BATCH = LOSS_SETTINGS["ssm"] | {"loss_params"}
LOSS_SETTINGS.update({"bsl": _IN_BATCH, "psl": _IN_BATCH - {"logq"}, "adaptau": _IN_BATCH, "slk": _IN_BATCH,
                      "clogq": _IN_BATCH - {"logq", "negatives"}, "ntr": _IN_BATCH - {"negatives"}})


def loss_settings(loss: str) -> set[str]:
    """The settings a (canonical) loss uses; a registered loss takes ``loss_params`` and the
    training similarity, and ``negatives`` when it is sampled."""
    if loss in LOSS_SETTINGS:
        return LOSS_SETTINGS[loss]
    from ssmrec.losses import kind_of

    return {"similarity", "loss_params"} | ({"negatives"} if kind_of(loss) == "sampled" else set())


MODEL_SETTINGS: dict[str, set[str]] = {"mf": set(), "svdpp": {"side", "a0", "a1"}, "lightgcn": {"layers"}}
# data settings that only apply to one kind of dataset
SINGLE_FILE_SETTINGS = ("ratios", "temporal", "kcore", "min_rating", "positive_min", "negative_max")
REGISTRY_SETTINGS = ("data_dir", "download")
DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
SAMPLERS = ("auto", "host", "device")
OPTIMIZERS = ("adam", "sparse-adam", "rowwise-adagrad")
"""The ``optimizer`` setting's values (see :mod:`ssmrec.train.optim`)."""
SPARSE = ("sparse-adam", "rowwise-adagrad")
"""The optimizers that update only the rows a step touched (they need row gradients)."""
INITS = ("xavier", "normal")
"""The ``init`` setting's values (see :func:`ssmrec.models.base.init_table`)."""


def is_sparse(name: str) -> bool:
    """Whether optimizer ``name`` takes row (sparse) gradients."""
    return name in SPARSE


def sparse_refusal(optimizer: str, loss_kind: str, model: str, layers: int) -> str | None:
    """Why a run cannot train with a sparse ``optimizer``, or None when it can.

    Args:
        optimizer: the ``optimizer`` setting.
        loss_kind: the loss's kind (``in_batch``, ``sampled``, ``full``).
        model: the canonical model key (``mf``, ``svdpp``, ``lightgcn``).
        layers: LightGCN's propagation layers.
    """
    if not is_sparse(optimizer):
        return None
    if loss_kind == "full":
        return (f"cannot be {optimizer} with a full-softmax loss: it scores every item at every step, so its "
                "gradient reaches every row of the item table (use optimizer adam, or an in-batch or sampled "
                "loss such as ssm or bpr)")
    if model == "lightgcn" and layers >= 2:
        return (f"cannot be {optimizer} with LightGCN of {layers} layers: a batch's representations read every "
                "node's previous layer, so each step propagates (and back-propagates through) the whole graph "
                "and every row gets a gradient (use layers 1, or optimizer adam)")
    return None


@dataclass
class TrainConfig(DataConfig):
    """Everything a training run needs. Data settings are those of :class:`DataConfig`.

    Model:
        model: ``mf``, ``svdpp`` or ``lightgcn`` (default: ``lightgcn``).
        dim: embedding size (default: 64).
        layers: LightGCN propagation layers (default: 1).
        side, a0, a1: SVD++ propagation side and exponents (default: ``user``, 0.5, 0.0).
        init: initialisation of the layer-0 tables: ``xavier`` (uniform, bound
            ``sqrt(6 / (rows + dim))``: the study's, whose scale shrinks as the catalogue grows) or
            ``normal`` (``N(0, init_std^2)`` whatever the catalogue); see
            :func:`ssmrec.models.base.init_table` (default: ``xavier``).
        init_std: the standard deviation of ``init normal`` (default: 0.01).
    Loss:
        loss: ``ssm``, ``bpr``, ``bce``, ``softmax``, ``ccl`` (default: ``ssm``).
        tau: temperature of ssm/softmax (default: 0.1).
        similarity: training similarity ``cos``/``ip`` (default: the loss's own: cos for
            ssm/softmax, ip for bpr/bce; ccl is always cos).
        reg: L2 coefficient on the batch's layer-0 embeddings, divided by the batch's positives
            (default: 1e-5). bce's loss is a mean over all B (1 + n) labelled pairs and bpr's over
            its B n pairs, so against a per-positive sum ``reg`` weighs (1 + n), resp. n, times more.
        negatives: per-positive negatives for bpr/bce/ccl (default: 1 / 4 / 800); for ssm and the
            in-batch losses after the study, N uniform unseen items per positive *in place of* the
            batch's other positives (the setting of SimpleX and of BSL's MF) (default: none: in-batch).
        mask_duplicates: ssm: mask in-batch copies of the positive (default: False).
        mask_seen: ssm: mask candidates the user has interacted with in train (default: False).
        extra_negatives: ssm: shared sampled negatives added to the in-batch ones (default: 0).
        negative_beta: their distribution, ``(degree + 1) ** beta`` with the item's training degree
            (0 = uniform) (default: 0.0).
        logq: ssm: subtract log expected candidate counts (logQ correction) (default: False).
        margin, neg_weight: ccl's ``m`` and ``w`` (default: 0.9, 150).
    Optimisation:
        lr, batch_size, epochs: learning rate (of Adam by default), positives per batch, max epochs
            (default: 1e-3, 2048, 100).
        optimizer: ``adam`` (dense Adam over whole tables, the study's), ``sparse-adam`` (lazy
            Adam: only the rows a batch touched move) or ``rowwise-adagrad`` (one accumulator per
            row, ``G_r += mean_j g_rj^2``, ``w_r -= lr g_r / (sqrt(G_r) + eps)``); the two sparse
            ones make a step's cost follow the batch, not the catalogue, and refuse the settings
            where every row gets a gradient (full softmax, LightGCN with 2+ layers); see
            :mod:`ssmrec.train.optim` (default: ``adam``).
        max_seconds: stop after the epoch in which this much training time has passed; 0 = no
            budget (default: 0).
    Evaluation and selection:
        protocol: ``paper`` (select on test, as the study's code) or ``holdout`` (select on
            validation, test once) (default: ``paper``).
        eval_every: evaluate every N epochs (default: 1).
        metric: selection metric (default: ``recall@20``).
        patience: evaluations without improvement before stopping; 0 = never stop early
            (default: 10).
        ks: cut-offs (default: 20).
        test_similarity: scoring at evaluation, ``ip`` or ``cos`` (default: the loss's own scoring,
            :attr:`scoring`: ``cos`` for ccl, which is trained and scored on cosine only (SimpleX);
            ``ip`` for the others, as the study scores every model, SSM's cosine training included).
        eval_chunk: users scored at once; memory is eval_chunk x n_items floats, scored in item
            blocks beyond 2^27 scores (default: 2048).
        eval_users: model selection and early stopping on a fixed sample of this many users with
            held-out items, drawn with ``seed`` (the same users at every evaluation), each mean
            printed with its 95% interval over the sample; 0 = all users (default: 0).
        test_users: the final test evaluation on a sample of this many users (0 = all, the
            default). Under ``paper`` with ``eval_users`` set, test is evaluated again at the
            best epoch on ``test_users`` instead of reusing the sample's numbers.
    Run:
        seed, device (``auto``/``cpu``/``cuda``), threads (torch intra-op threads; 0 = torch's
        default), out (run directory; default: ``runs/<dataset>-<model>-<loss>-<time>``),
        checkpoint_every: seconds between mid-epoch checkpoints, 0 = only at epoch ends
        (default: 300), progress: show progress bars (default: True).
        nproc: worker processes on this machine, each with its part of every global batch; the
            result equals one process's (default: 1; ``torchrun`` sets it by its own flags).
        sampler: where batches and negatives are drawn: ``host`` (numpy,
            :class:`~ssmrec.data.PairSampler`), ``device`` (on the training device,
            :class:`~ssmrec.data.DeviceSampler`: same distributions, another random stream) or
            ``auto``: ``device`` when training on CUDA, ``host`` otherwise, so CPU runs are
            unchanged (default: ``auto``).
        sync_every: steps between fetches of the loss to the host (its value, the NaN check, the
            stop-signal check); in between the losses stay on the device. 0 = auto: 1 on CPU, 50
            on CUDA; always 1 with several processes. Results do not depend on it (default: 0).
    """

    model: str = "lightgcn"
    dim: int = 64
    layers: int = 1
    side: str = "user"
    a0: float = 0.5
    a1: float = 0.0
    init: str = "xavier"
    init_std: float = 0.01
    loss: str = "ssm"
    tau: float = 0.1
    similarity: str | None = None
    reg: float = 1e-5
    negatives: int | None = None
    mask_duplicates: bool = False
    mask_seen: bool = False
    extra_negatives: int = 0
    negative_beta: float = 0.0
    logq: bool = False
    margin: float = 0.9
    neg_weight: float = 150.0
    lr: float = 1e-3
    optimizer: str = "adam"
    batch_size: int = 2048
    epochs: int = 100
    max_seconds: float = 0.0
    protocol: str = "paper"
    eval_every: int = 1
    metric: str = "recall@20"
    patience: int = 10
    ks: tuple[int, ...] = (20,)
    test_similarity: str | None = None
    eval_chunk: int = 2048
    eval_users: int = 0
    test_users: int = 0
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    out: str | None = None
    checkpoint_every: float = 300.0
    progress: bool = True
    nproc: int = 1
    loss_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    plugins: tuple[str, ...] = ()
    sampler: str = "auto"
    sync_every: int = 0

    def __post_init__(self) -> None:
        # direct construction (``TrainConfig(ks=[0])``) is checked like from_dict / replace
        self.validate("TrainConfig")

    @property
    def scoring(self) -> str:
        """The test-time similarity: ``test_similarity`` if given, else the loss's own (see above)."""
        if self.test_similarity:
            return self.test_similarity
        from ssmrec.losses import canonical

        return "cos" if canonical(self.loss) == "ccl" else "ip"

    def data_config(self) -> DataConfig:
        return DataConfig(**{f.name: getattr(self, f.name) for f in fields(DataConfig)})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "settings") -> TrainConfig:
        cfg = cls()
        return cfg.replace(values, source=source)

    def replace(self, values: dict[str, Any], *, source: str = "settings") -> TrainConfig:
        """A copy with ``values`` applied (keys with ``-`` accepted as ``_``), type-checked.

        Types are strict: a bool setting takes ``True``/``False``, an int setting an integer (a
        float only if it is whole), a float setting an int or a float, a text setting a string
        (or a path); never a string for a number or a bool. Command-line text is parsed first,
        see :func:`~ssmrec.train.config_io.parse_text`.
        """
        known = {f.name: f for f in fields(self)}
        out = copy.copy(self)
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in known:
                close = difflib.get_close_matches(name, list(known), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ConfigError(f"{source}: unknown setting {key!r}{hint}")
            setattr(out, name, coerce(known[name], value, source))
        out.validate(source)
        return out

    def validate(self, source: str = "settings") -> None:
        """Check every setting's type and range; a :class:`ConfigError` names the first bad one."""
        from ssmrec.data.dataset import PROTOCOLS
        from ssmrec.eval.metrics import METRICS
        from ssmrec.losses import canonical, check_params
        from ssmrec.models import MODELS

        for f in fields(self):
            setattr(self, f.name, coerce(f, getattr(self, f.name), source))

        def bad(name, msg):
            raise ConfigError(f"{source}: {name} {msg}")

        if not self.dataset:
            bad("dataset", "must name a dataset, a folder or a file, got ''")
        if self.model.lower().replace("+", "p").replace("-", "") not in MODELS:
            bad("model", f"must be one of {', '.join(MODELS)}, got {self.model!r}")
        for module in self.plugins:  # they may register losses: before the loss is looked up
            try:
                importlib.import_module(module)
            except ImportError as e:
                bad("plugins", f"cannot import {module!r} ({e})")
        try:
            canonical(self.loss)
        except ValueError as e:
            bad("loss", str(e))
        try:
            check_params(self.loss, self.loss_params)
        except ValueError as e:
            bad("loss_params", str(e))
        if self.protocol not in PROTOCOLS:
            bad("protocol", f"must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.side not in ("user", "item"):
            bad("side", f"must be 'user' or 'item', got {self.side!r}")
        for name in ("similarity", "test_similarity"):
            v = getattr(self, name)
            if v is not None and v not in ("cos", "ip"):
                bad(name, f"must be 'cos' or 'ip', got {v!r}")
        check_device(self.device, f"{source}: device")
        if self.sampler not in SAMPLERS:
            bad("sampler", f"must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        self._check_optimizer(bad)
        if self.init not in INITS:
            bad("init", f"must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.sync_every < 0:
            bad("sync_every", f"must be >= 1 step, or 0 for auto (1 on CPU, 50 on CUDA), got {self.sync_every}")
        # numbers: NaN compares false with everything, so ranges are written as what must hold
        for name in ("tau", "lr", "init_std"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                bad(name, f"must be a finite number > 0, got {v}")
        for name in ("reg", "neg_weight", "max_seconds", "checkpoint_every"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                bad(name, f"must be a finite number >= 0, got {v}")
        for name in ("a0", "a1", "negative_beta", "min_rating", "positive_min", "negative_max"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                bad(name, f"must be a finite number, got {v}")
        if self.explicit_feedback:
            if self.positive_min is None or self.negative_max is None:
                bad("positive_min" if self.positive_min is None else "negative_max",
                    "must be given too: explicit feedback reads positives (rating >= positive_min) and dislikes "
                    "(rating <= negative_max)")
            if self.negative_max >= self.positive_min:
                bad("negative_max", f"must be below positive_min ({self.positive_min:g}), got {self.negative_max:g}")
            if self.min_rating is not None:
                bad("min_rating", "cannot be combined with positive_min / negative_max (positive_min already "
                    "selects the positives)")
        if not -1 <= self.margin < 1:
            bad("margin", f"must be in [-1, 1) (it is compared with a cosine), got {self.margin}")
        if not 0 <= self.valid_fraction < 1:
            bad("valid_fraction", f"must be in [0, 1), got {self.valid_fraction}")
        for name in ("batch_size", "epochs", "eval_every", "dim", "eval_chunk", "nproc"):
            if getattr(self, name) < 1:
                bad(name, f"must be positive, got {getattr(self, name)}")
        for name in ("patience", "layers", "extra_negatives", "threads", "kcore", "eval_users", "test_users"):
            if getattr(self, name) < 0:
                bad(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("seed", "split_seed"):
            if not 0 <= getattr(self, name) < 2**63:
                bad(name, f"must be between 0 and 2**63 - 1, got {getattr(self, name)}")
        loss = canonical(self.loss)
        if self.nproc > 1 and loss in ("ntr", "adaptau"):
            why = ("its dislikes are averaged per process, which would not sum to the single-process loss"
                   if loss == "ntr" else "its per-user loss statistics are per process between epochs, so a "
                   "resumed run would not be exact")
            bad("nproc", f"must be 1 with loss {loss}: {why}")
        if self.negatives and "negatives" in loss_settings(loss) and "extra_negatives" in loss_settings(loss):
            # an in-batch loss: its own sampled negatives replace the batch's
            clash = [name for name, on in (("extra_negatives", self.extra_negatives), ("logq", self.logq),
                                           ("mask_seen", self.mask_seen), ("nproc", self.nproc > 1)) if on]
            if clash:
                bad("negatives", f"with loss {loss} means {self.negatives} sampled negatives per positive in "
                    f"place of the batch's other positives; it cannot be combined with {', '.join(clash)}")
        if self.negatives is not None and self.negatives < 1:
            bad("negatives", f"must be >= 1, got {self.negatives}")
        self._check_ratios(bad)
        if not self.ks:
            bad("ks", "must list at least one cut-off K")
        if any(k < 1 for k in self.ks):
            bad("ks", f"must all be positive, got {' '.join(map(str, self.ks))}")
        m, _, k = self.metric.partition("@")
        if m not in METRICS or not k.isdigit() or int(k) < 1:
            bad("metric", f"must look like 'recall@20' with one of {METRICS} and K >= 1, got {self.metric!r}")
        if int(k) not in self.ks:
            self.ks = tuple(sorted({*self.ks, int(k)}))

    def _check_optimizer(self, bad) -> None:
        from ssmrec.losses import canonical, kind_of

        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        model = self.model.lower().replace("+", "p").replace("-", "")
        why = sparse_refusal(self.optimizer, kind_of(canonical(self.loss)), model, self.layers)
        if why:
            bad("optimizer", why)

    def _check_ratios(self, bad) -> None:
        r = self.ratios
        shown = " ".join(f"{x:g}" for x in r)
        if len(r) != 3:
            bad("ratios", f"must be three numbers (train, valid and test shares), got {len(r)}: {shown}")
        if not all(math.isfinite(x) and x >= 0 for x in r):
            bad("ratios", f"must be finite and non-negative, got {shown}")
        if r[0] <= 0 or r[2] <= 0:
            which = "train share 0: nothing to train on" if r[0] <= 0 else "test share 0: nothing to test on"
            bad("ratios", f"must give a positive train and test share, got {shown} ({which})")
        if abs(sum(r) - 1) > 1e-6:
            bad("ratios", f"must sum to 1, got {shown} (sum {sum(r):g})")

    def inapplicable(self, explicit: set[str] | list[str]) -> list[str]:
        """Warnings, one line each, for the explicitly given settings this run ignores.

        ``explicit`` names the settings a user gave (flags or file keys, ``-`` or ``_``). A
        setting is ignored when the loss or the model does not use it (:data:`LOSS_SETTINGS`,
        :data:`MODEL_SETTINGS`), or when it concerns another kind of dataset or protocol: split
        settings only apply to a single file to split, ``data_dir``/``download`` to registry
        datasets, ``valid_fraction`` to the holdout protocol.
        """
        from ssmrec.losses import canonical

        given = {name.replace("-", "_") for name in explicit}
        loss = canonical(self.loss)
        model = self.model.lower().replace("+", "p").replace("-", "")
        kind = _dataset_kind(self.dataset)
        lines = []
        for name in (f.name for f in fields(self) if f.name in given):
            users = sorted(k for k, v in LOSS_SETTINGS.items() if name in v)
            if users and name not in loss_settings(loss):
                lines.append(f"{name} is ignored: the {loss} loss does not use it (the {'/'.join(users)} losses do)")
                continue
            users = sorted(k for k, v in MODEL_SETTINGS.items() if name in v)
            if users and model not in users:
                lines.append(f"{name} is ignored: only the {'/'.join(users)} model uses it, this run's is {model}")
                continue
            if name == "init_std" and self.init != "normal":
                lines.append(f"init_std is ignored: it is the spread of init normal, this run's init is {self.init}")
            elif name == "negative_beta" and not self.extra_negatives:
                lines.append("negative_beta is ignored: it shapes the extra negatives, and extra_negatives is 0")
            elif name in SINGLE_FILE_SETTINGS and kind in ("folder", "registry"):
                lines.append(f"{name} is ignored: it applies to a single interaction file to split, and "
                             f"{self.dataset} is a {kind} dataset, already split")
            elif name in REGISTRY_SETTINGS and kind in ("folder", "file"):
                lines.append(f"{name} is ignored: it applies to registry datasets, and {self.dataset} is a {kind}")
            elif name == "valid_fraction" and self.protocol != "holdout":
                lines.append(f"valid_fraction is ignored: it applies to the holdout protocol, this run's is "
                             f"{self.protocol}")
            elif name == "split_seed" and kind in ("folder", "registry") and self.protocol != "holdout":
                lines.append(f"split_seed is ignored: {self.dataset} is already split and the {self.protocol} "
                             "protocol carves nothing out of it")
        return lines


def _dataset_kind(dataset: str) -> str | None:
    """``registry``, ``registry-file`` (a registered single file, split like a file), ``folder``,
    ``file`` or None (not found), as :func:`load_dataset` decides."""
    from ssmrec.data import registry
    from ssmrec.data.interactions import DataError

    if "/" not in dataset and not dataset.startswith("."):
        try:
            return "registry-file" if registry.get_spec(dataset).single_file else "registry"
        except DataError:
            pass
    path = Path(dataset).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "file"
    return None


def check_device(name: str, what: str = "device") -> None:
    """A device name the run can use: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if not DEVICE.match(name):
        raise ConfigError(f"{what} must be auto, cpu, cuda or cuda:N, got {name!r}")
