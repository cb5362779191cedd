"""The video-tracking example pipeline (seed 003's stages) on a synthetic traffic video.

Each stage is a module run as ``python -m examples.video_tracking.<stage>`` inside its workspace: it reads the
previous stage's files from the current directory and writes its own outputs there (always by replacing a file,
never by writing into an existing one, because inputs may be read-only hard links to an earlier stage's outputs).
``pipeline.yaml`` lists the stages in order.
"""
