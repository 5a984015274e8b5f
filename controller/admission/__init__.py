"""The admission controller: the only code that imports kopf.

* :mod:`~controller.admission.review`: AdmissionReview v1 parsing and responses.
* :mod:`~controller.admission.webhook`: the HTTPS webhook server (TLS reloaded in place).
* :mod:`~controller.admission.handlers`: the ``@kopf.on.validate`` handlers, indexes, status, readiness.
* :mod:`~controller.admission.server`: ``imprimatur serve`` (kopf in a cluster, or policy files).
"""
