"""Worker-side execution of model operations: each module is what one kind of Celery task
(or a management command working in its own process) runs. TensorFlow is imported only
inside the functions that train or evaluate, in a worker child."""
