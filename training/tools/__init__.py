"""Dataset tools: `summarize` (what a set config will train on, with `--check-videos`) and
`to_bag` (`dataset_to_bag`: a labelled video list -> rosbag2 + labels CSV). `synth` lives in
`training/synthetic/`."""
