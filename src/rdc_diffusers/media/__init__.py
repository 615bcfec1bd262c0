"""Pixels in and out: which images are accepted and how they come back (:mod:`.image_io`), clips and frame folders
read and written as streams (:mod:`.video_io`), and output files written whole or not at all
(:mod:`.atomic_write`)."""
