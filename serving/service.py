"""Compatibility path: `bentoml serve serving.service:Riskgate` keeps working (an open issue and
older notes name it); the service itself lives in serving/http/service.py."""

from serving.http.service import Riskgate

__all__ = ["Riskgate"]
