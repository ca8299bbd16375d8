"""Writing a trained student to a file a deployment loads: a PyTorch state dict, a
TorchScript module, an ONNX graph or safetensors weights; and the ONNX file's check
against PyTorch with onnxruntime."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kdsweep.errors import ConfigError, RunFailure

FORMATS = {
    "state_dict": ".pt",
    "torchscript": ".torchscript.pt",
    "onnx": ".onnx",
    "safetensors": ".safetensors",
}
ONNX_EXTRA = 'pip install "kdsweep[onnx]"'
ONNX_AGREEMENT = 0.999  # share of test samples where onnxruntime and PyTorch must agree


def check_format(name: str) -> None:
    """An error naming the format unless kdsweep can write it here (ONNX needs its extra)."""
    if name not in FORMATS:
        raise ConfigError(f"--format {name!r}: unknown format (formats: {', '.join(FORMATS)})")
    if name == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"--format onnx needs the onnx and onnxruntime packages: {ONNX_EXTRA}"
            ) from None


def write_model(model: nn.Module, sample: torch.Tensor, name: str, path: Path) -> None:
    """Write the (eval-mode, CPU) ``model`` to ``path`` in format ``name``; ``sample`` is
    an input batch that fixes every dimension but the batch's."""
    if name == "state_dict":
        torch.save(model.state_dict(), path)
    elif name == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    elif name == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notes
            torch.jit.save(torch.jit.trace(model, sample), path)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter's notes
            torch.onnx.export(
                model,
                (sample,),
                str(path),
                dynamo=False,  # the graph of any plugin model torch can trace
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )


@dataclass(frozen=True)
class OnnxCheck:
    """onnxruntime against PyTorch on the test split."""

    onnx_accuracy: float
    torch_accuracy: float
    agreement: float  # share of test samples with the same predicted class
    samples: int


def check_onnx(
    path: Path, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor
) -> OnnxCheck:
    """Run the ONNX file with onnxruntime on ``inputs`` and compare with PyTorch; an
    error when fewer than 99.9% of the predictions agree."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    onnx_logits = torch.from_numpy(session.run(None, {feed: inputs.numpy()})[0])
    with torch.no_grad():
        torch_logits = model(inputs)
    onnx_pred, torch_pred = onnx_logits.argmax(dim=1), torch_logits.argmax(dim=1)
    check = OnnxCheck(
        onnx_accuracy=(onnx_pred == targets).float().mean().item(),
        torch_accuracy=(torch_pred == targets).float().mean().item(),
        agreement=(onnx_pred == torch_pred).float().mean().item(),
        samples=len(targets),
    )
    if check.agreement < ONNX_AGREEMENT:
        raise RunFailure(
            f"{path}: onnxruntime and PyTorch agree on {check.agreement:.2%} of "
            f"{check.samples} test samples (at least {ONNX_AGREEMENT:.1%} expected)"
        )
    return check
