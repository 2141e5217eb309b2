"""The two base frameworks: MoCo v3 (online encoder, projector, predictor, optional momentum encoder) and DINO."""
