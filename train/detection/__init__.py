"""Detection training: datasets (YOLO, COCO), box-aware augmentation, the detector's loss and trainer, COCO mAP."""
