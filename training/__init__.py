"""Pre-training code for sslzoo: frameworks (MoCo v3, DINO), method view generators and objectives, the pretrain loop."""
