"""Studies beside the product: they import ``heritage``, the product never imports them."""
