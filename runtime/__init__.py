"""Everything needed on the device: bundle, preprocessing, backends, postprocessing, sources, sinks, `edgecam run`.

Never imports torch, edgecam.train or edgecam.export.
"""
