"""The Hugging Face transformers measured by IrEne, rebuilt from their configs (no weights).

No hub access is needed: the published hyper-parameters of each checkpoint's ``config.json``
are written here (source: the model cards / ``config.json`` files of the Hugging Face hub
checkpoints ``bert-base-uncased``, ``distilbert-base-uncased``, ``roberta-base``, ``gpt2``,
``distilgpt2`` and ``openai-gpt``, the same numbers as the BERT, DistilBERT, RoBERTa, GPT-2 and
GPT papers' "base" sizes).  ``transformers`` is an optional extra (``pip install 'exante[hf]'``).

Built with eager attention (explicit ``matmul`` + ``softmax``, what IrEne's 2020 code ran and
measured as its ``MatMul``/``Softmax`` primitives) and ``use_cache=False``, on ``meta``.

Capture work-arounds (cheap, physically equivalent; see :func:`prepare_for_capture`):
``transformers.pytorch_utils.Conv1D`` (GPT/GPT-2: ``addmm(b, x, W)``) becomes an
``nn.Linear`` with the same in/out features (the same GEMM); ``GELUActivation``
(``F.gelu``, one kernel) becomes ``nn.GELU``; ``NewGELUActivation`` (GPT-2's tanh formula,
several elementwise kernels) becomes a plain function so capture records its ops.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from profiling.errors import ExanteError

#: model id -> (transformers config class, its published hyper-parameters)
HF_CONFIGS: dict[str, tuple[str, dict]] = {
    "bert-base-uncased": ("BertConfig", dict(
        vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512,
        type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0)),
    "distilbert-base-uncased": ("DistilBertConfig", dict(
        vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072,
        activation="gelu", max_position_embeddings=512, sinusoidal_pos_embds=False,
        pad_token_id=0)),
    "roberta-base": ("RobertaConfig", dict(
        vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, hidden_act="gelu", max_position_embeddings=514,
        type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
        eos_token_id=2)),
    "gpt2": ("GPT2Config", dict(
        vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
        activation_function="gelu_new", layer_norm_epsilon=1e-5)),
    "distilgpt2": ("GPT2Config", dict(
        vocab_size=50257, n_positions=1024, n_embd=768, n_layer=6, n_head=12,
        activation_function="gelu_new", layer_norm_epsilon=1e-5)),
    "openai-gpt": ("OpenAIGPTConfig", dict(
        vocab_size=40478, n_positions=512, n_embd=768, n_layer=12, n_head=12, afn="gelu",
        layer_norm_epsilon=1e-5)),
}

__all__ = ["HF_CONFIGS", "build_hf_model", "prepare_for_capture", "gelu_tanh_formula"]


def _transformers():
    from profiling.model_refs import import_transformers

    try:                    # with the torchvision workaround (transformers imports torchvision)
        return import_transformers()
    except ExanteError as exc:
        raise ExanteError(f"the IrEne and Zeus benchmarks rebuild Hugging Face models: {exc}") \
            from None


def gelu_tanh_formula(x):
    """GPT-2's ``gelu_new``: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), as separate ops."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def prepare_for_capture(model: nn.Module) -> nn.Module:
    """Swap the HF leaves capture cannot see into for equivalent torch pieces (in place)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            cls = type(child).__name__
            if cls == "Conv1D" and hasattr(child, "nx") and hasattr(child, "nf"):
                dev = child.weight.device
                # torch types a module attribute as Tensor | Module; HF Conv1D's nx, nf are ints
                nx, nf = int(child.nx), int(child.nf)  # type: ignore[arg-type]
                lin = nn.Linear(nx, nf, bias=child.bias is not None, device=dev)
                setattr(parent, name, lin)
            elif cls == "GELUActivation":
                setattr(parent, name, nn.GELU())
            elif cls in ("NewGELUActivation", "GELUTanh", "FastGELUActivation"):
                delattr(parent, name)                 # a plain attribute: its ops get captured
                object.__setattr__(parent, name, gelu_tanh_formula)
    return model


def build_hf_model(name: str, device: str = "meta") -> nn.Module:
    """The base model (no LM head; BERT/RoBERTa keep their pooler) of a known model id."""
    if name not in HF_CONFIGS:
        raise ExanteError(f"unknown model {name!r}; accepted: {', '.join(HF_CONFIGS)}")
    tf = _transformers()
    cls_name, kw = HF_CONFIGS[name]
    config = getattr(tf, cls_name)(**kw)
    config._attn_implementation = "eager"
    config.use_cache = False
    with torch.device(device):
        model = tf.AutoModel.from_config(config, attn_implementation="eager")
    model.eval()
    return prepare_for_capture(model)
