"""Treatment response (``task: response``): from an image, clinical covariates and the treatment
options, the probability of response under each option from a deep ensemble, and a
recommendation only when it is clear (else "refer: uncertain" or "refer: input unlike training
data"). docs/response-model.md; serial-scan response assessment is :mod:`medsight.response`."""

from medsight.tasks.response.recommend import Recommendation, recommend
from medsight.tasks.response.task import ResponseResult, ResponseTask

__all__ = ["ResponseTask", "ResponseResult", "Recommendation", "recommend"]
