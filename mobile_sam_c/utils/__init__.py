"""mobile_sam_c.utils - the helper modules MobileSAM code imports from ``mobile_sam.utils``."""
