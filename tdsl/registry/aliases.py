"""Did-you-mean by meaning: the names other frameworks give tdsl's ops, losses, metrics,
optimizers and schedules.

`binary_crossentropy` is not spelled like `bce_with_logits`, so a spelling match cannot find
it; these tables can. An alias only suggests: a spec that writes `Dense` is still refused, and
the message names the tdsl word, so a spec always says one thing one way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from tdsl.wording import did_you_mean, show

# Keys are normalized (`_normal`): lower case, letters and digits only, last dotted part.
_LOSSES = {
    "binarycrossentropy": ("bce_with_logits", "bce"),
    "binarycrossentropywithlogits": ("bce_with_logits",),
    "sigmoidbinarycrossentropy": ("bce_with_logits",),
    "sigmoidcrossentropy": ("bce_with_logits",),
    "bcewithlogits": ("bce_with_logits",),
    "bcewithlogitsloss": ("bce_with_logits",),
    "bceloss": ("bce",),
    "binarycrossentropyloss": ("bce",),
    "logloss": ("bce_with_logits", "cross_entropy"),
    "categoricalcrossentropy": ("cross_entropy",),
    "sparsecategoricalcrossentropy": ("cross_entropy",),
    "softmaxcrossentropy": ("cross_entropy",),
    "crossentropyloss": ("cross_entropy",),
    "crossentropy": ("cross_entropy",),
    "ce": ("cross_entropy",),
    "nllloss": ("nll",),
    "negativeloglikelihood": ("nll",),
    "meansquarederror": ("mse",),
    "mseloss": ("mse",),
    "l2": ("mse",),
    "l2loss": ("mse",),
    "squarederror": ("mse",),
    "meanabsoluteerror": ("l1",),
    "mae": ("l1",),
    "l1loss": ("l1",),
    "absoluteerror": ("l1",),
    "huberloss": ("huber",),
    "smoothl1loss": ("smooth_l1",),
    "focalloss": ("focal",),
    "sigmoidfocalloss": ("focal",),
    "binaryfocalcrossentropy": ("focal",),
    "cosinesimilarity": ("cosine",),
    "cosineembeddingloss": ("cosine",),
}
_METRICS = {
    "acc": ("accuracy",),
    "categoricalaccuracy": ("accuracy",),
    "sparsecategoricalaccuracy": ("accuracy",),
    "binaryaccuracy": ("accuracy",),
    "f1score": ("f1",),
    "fscore": ("f1",),
    "fmeasure": ("f1",),
    "fbeta": ("f1",),
    "auc": ("auroc",),
    "rocauc": ("auroc",),
    "aucroc": ("auroc",),
    "precisionscore": ("precision",),
    "recallscore": ("recall",),
    "sensitivity": ("recall",),
    "meanabsoluteerror": ("mae",),
    "meansquarederror": ("mse",),
    "rootmeansquarederror": ("rmse",),
    "meanabsolutepercentageerror": ("mape",),
    "iou": ("mean_iou",),
    "meaniou": ("mean_iou",),
    "jaccard": ("mean_iou",),
    "jaccardindex": ("mean_iou",),
    "dicecoefficient": ("dice",),
    "dicescore": ("dice",),
    "topkaccuracy": ("top_k_accuracy",),
    "topkcategoricalaccuracy": ("top_k_accuracy",),
    "sparsetopkcategoricalaccuracy": ("top_k_accuracy",),
    "ppl": ("perplexity",),
}
_OPS = {
    "dense": ("linear",),
    "fullyconnected": ("linear",),
    "fc": ("linear",),
    "innerproduct": ("linear",),
    "batchnormalization": ("batchnorm",),
    "layernormalization": ("layernorm",),
    "groupnormalization": ("groupnorm",),
    "maxpooling1d": ("maxpool1d",),
    "maxpooling2d": ("maxpool2d",),
    "maxpooling3d": ("maxpool3d",),
    "averagepooling1d": ("avgpool1d",),
    "averagepooling2d": ("avgpool2d",),
    "averagepooling3d": ("avgpool3d",),
    "globalaveragepooling1d": ("adaptive_avgpool1d",),
    "globalaveragepooling2d": ("adaptive_avgpool2d",),
    "globalmaxpooling2d": ("adaptive_maxpool2d",),
    "conv1dtranspose": ("conv_transpose1d",),
    "conv2dtranspose": ("conv_transpose2d",),
    "conv3dtranspose": ("conv_transpose3d",),
    "deconv2d": ("conv_transpose2d",),
    "simplernn": ("rnn",),
    "concatenate": ("concat",),
    "cat": ("concat",),
    "multiheadattention": ("multihead_attention",),
    "mha": ("multihead_attention", "self_attention"),
    "transformerencoderlayer": ("transformer_encoder_layer",),
    "transformerblock": ("transformer_encoder_layer",),
    "logsoftmax": ("log_softmax",),
    "leakyrelu": ("leaky_relu",),
    "spatialdropout2d": ("dropout2d",),
}
_OPTIMIZERS = {
    "sgdm": ("sgd",),
    "momentum": ("sgd",),
    "nesterov": ("sgd",),
    "gradientdescent": ("sgd",),
    "adamweightdecay": ("adamw",),
    "lamb": ("adamw",),
}
_SCHEDULES = {
    "plateau": ("reduce_on_plateau",),
    "reducelronplateau": ("reduce_on_plateau",),
    "reduceonplateau": ("reduce_on_plateau",),
    "steplr": ("step",),
    "stepdecay": ("step",),
    "multisteplr": ("multi_step",),
    "piecewiseconstantdecay": ("multi_step",),
    "exponentiallr": ("exponential",),
    "exponentialdecay": ("exponential",),
    "cosineannealinglr": ("cosine",),
    "cosineannealing": ("cosine",),
    "cosinedecay": ("cosine",),
    "onecyclelr": ("one_cycle",),
    "onecycle": ("one_cycle",),
    "linearlr": ("linear_warmup",),
    "warmup": ("linear_warmup", "cosine_warmup"),
    "linearwarmup": ("linear_warmup",),
    "warmupcosine": ("cosine_warmup",),
    "cosinewithwarmup": ("cosine_warmup",),
    "cosinewarmup": ("cosine_warmup",),
}
ALIASES: dict[str, Mapping[str, tuple[str, ...]]] = {
    "loss": _LOSSES,
    "metric": _METRICS,
    "op": _OPS,
    "optimizer": _OPTIMIZERS,
    "schedule": _SCHEDULES,
}


def _normal(name: str) -> str:
    """`tf.keras.losses.BinaryCrossentropy` -> `binarycrossentropy`."""
    return re.sub(r"[^a-z0-9]", "", name.rsplit(".", 1)[-1].lower())


def suggest(vocabulary: str, word: str, choices: Iterable[str], listing_limit: int = 12):
    """A did-you-mean hint for an unknown `word` of `vocabulary` ("loss", "metric", "op",
    "optimizer", "schedule"): the tdsl names it means in other frameworks (or written in
    another case), else the closest spellings."""
    choices = sorted(set(choices))
    key = _normal(word)
    meant = [c for c in ALIASES[vocabulary].get(key, ()) if c in choices]
    meant = meant or [c for c in choices if _normal(c) == key and c != word]
    if meant:
        return "did you mean " + " or ".join(show(c) for c in meant[:3]) + "?"
    return did_you_mean(word, choices, listing_limit)
