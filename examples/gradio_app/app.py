"""Hugging Face Space entry point. The demo itself is `rdc_diffusers.demo` (also served locally by `rdc demo`)."""

from rdc_diffusers.demo import MAX_UPLOAD_MB, build_demo

demo = build_demo()

if __name__ == "__main__":
    demo.launch(max_file_size=f"{MAX_UPLOAD_MB}mb")
