"""Where models come from and go to: bundled names and loading options (:mod:`.pretrained`), what a saved or
pushed model carries and the upload (:mod:`.upload`), model cards (:mod:`.model_card`), and how
``DiffusionPipeline.from_pretrained`` finds our pipelines (:mod:`.registration`)."""
