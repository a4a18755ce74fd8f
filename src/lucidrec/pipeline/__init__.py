"""The request pipeline: a request (:class:`lucidrec.pipeline.serving.Request`) through components
(:mod:`lucidrec.pipeline.components`) assembled once per trained model (:class:`lucidrec.pipeline.serving.Pipeline`)."""
