"""Help texts of the ``exante`` command line (kept out of :mod:`predictor.cli.main`; torch-free)."""

MODEL_REF_HELP = (
    "the network: torchvision:NAME (e.g. torchvision:resnet50) | timm:NAME | "
    "hf:MODEL_TYPE[,key=value] (a Hugging Face model from its default config, e.g. hf:gpt2 or "
    "hf:llama,num_hidden_layers=2; --input is the sequence length) | "
    "mlp:in=100,depth=10,width=100,out=1 (depth hidden Linear layers of width units) | "
    "mlpseq:in=100,sizes=75-50-1 (Linear layers of the given widths) | "
    "convstack:in=1x10x10,filters=32-32,kernel=3,out=1 (Conv2d stack + Linear head) | "
    "encoder:d=256,heads=4,layers=2 (transformer encoder) | path/to/file.py:factory | "
    "package.module:factory (a function returning an nn.Module). Zoo models are built "
    "without weights, on the meta device (no download, no memory)")
HARDWARE_HELP = (
    "the GPU to predict for (default h100, the measured one): any GPU of the catalogue, e.g. "
    "a100, v100, l4, rtx4090 (`--list-hardware` lists them); GPUs with measured rows (H100, "
    "RTX 3090/4090, A40, V100, RTX 6000) have their own fitted model, every other GPU is "
    "predicted from its datasheet by the joint multi-GPU model and says so")
MODE_HELP = (
    "inference: one forward of the batch under torch.inference_mode(); train_step: "
    "zero_grad, forward, loss, backward, optimizer.step() (default inference)")
DTYPE_HELP = (
    "precision of the run: fp32 (float32 throughout, the default); bf16 (and fp16 where "
    "offered): autocast mixed precision")
OPTIMIZER_HELP = "optimizer of a train_step: sgd | adam | adamw (default sgd, as in predict())"

SCENARIO_EXAMPLE = """\
scenario file (--scenario plan.toml), e.g.:

  model = "mlp:in=100,depth=10,width=100,out=1"   # MODEL_REF
  input = "100"                  # per-sample shape, e.g. "3x224x224"
  hardware = "h100"              # GPU (catalogue name)
  pue = 1.58                     # data-centre PUE, 1 (GPU only) to 3
  region = "aws:us-east-1"       # or: intensity_g_per_kwh = 120.0 (default: world average)

  [[training]]                   # one or more training runs
  epochs = 10
  dataset_size = 100000          # samples (or dataset_tokens = 2e9)
  batch = 32
  optimizer = "adam"             # sgd | adam | adamw
  dtype = "fp32"

  [search]                       # optional: architecture search / tuning trials
  trials = 20
  epochs = [1, 10]               # spread evenly over the trials

  [inference]                    # optional: serving
  requests = 1e6                 # samples served
  batch = 1

Unknown keys are refused with the accepted ones; `python -c "import predictor.carbon.lifecycle as l;
help(l)"` documents every key. theta in the report is the training/inference energy ratio:
one train step over one forward of the same batch."""
