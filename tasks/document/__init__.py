"""Document: the model card, datasheet and impact assessment, and the evidence an approver signs."""
