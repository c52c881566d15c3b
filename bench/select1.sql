-- baseline: the physical limit of one SQL call
SELECT 1;
