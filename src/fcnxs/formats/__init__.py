"""Foreign weight files read as their own arrays, without their frameworks: MXNet
checkpoints and symbols, Caffe models, torch.save files; and which of them a file is."""
