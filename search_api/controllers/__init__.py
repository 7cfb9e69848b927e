"""HTTP controllers: thin, they validate, call the pipeline and shape the reply."""
