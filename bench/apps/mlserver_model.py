"""MLServer's custom inference runtime for the benchmark model, shaped like mlserver-sklearn's.

A custom runtime rather than mlserver-sklearn itself: its `predict_proba` output answers both
classes' probabilities, while every stack here answers the positive class's alone.
"""

from __future__ import annotations

import joblib  # type: ignore[import-untyped]
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, NumpyRequestCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class BenchRuntime(MLModel):
    async def load(self) -> bool:
        self._model = joblib.load(await get_model_uri(self._settings))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        features = self.decode_request(payload, default_codec=NumpyRequestCodec)
        output = self._model.predict_proba(features)[:, 1]
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(name="predict_proba", payload=output)],
        )
