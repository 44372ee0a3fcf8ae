"""Every write of the clinical workflow, one module per subject: the audit trail (`audit`),
stored files (`files`), uploads (`uploads`), instances received over the DICOM network
(`receiving`), the inference queue (`inference_queue`), the analysis in the worker
(`analysis`) and its results (`results`), a case's status (`case_status`), analysing again
(`reanalysis`), reports (`reports`) and the DICOM header panel (`header`). The HTML views, the
API, the DICOM listener and the commands all call these, by the names this package
re-exports; the modules import each other directly."""

from chestnet_site.errors import ServiceError
from diagnosis.services.analysis import images_claim, images_fail, inference_run
from diagnosis.services.audit import audit_record, case_viewed_audit, cases_listed_audit
from diagnosis.services.case_status import case_refresh_status
from diagnosis.services.files import StoredFile, image_file_open
from diagnosis.services.header import image_header_for_user
from diagnosis.services.inference_queue import (
    INFERENCE_TASK,
    PROCESSING_LEASE,
    image_enqueue,
    image_enqueue_on_commit,
    requeue_stale,
)
from diagnosis.services.reanalysis import case_reanalyse, image_retry, reanalyse_unreported
from diagnosis.services.receiving import (
    InstanceRejected,
    Received,
    StudyMismatch,
    case_pacs_failure_set,
    case_pacs_retry_audit,
    instance_receive,
)
from diagnosis.services.reports import (
    ReviewFields,
    case_claim,
    case_delete,
    case_release,
    report_reassign,
    review_amend,
    review_fields,
    review_sign,
    review_submit,
)
from diagnosis.services.results import (
    FAILED_GENERIC,
    FAILED_STORAGE_FULL,
    Analysed,
    Preview,
    analyses_store,
)
from diagnosis.services.uploads import (
    ImageRejected,
    ValidatedImage,
    case_create,
    image_validate,
    uploads_validate,
)

__all__ = [
    "FAILED_GENERIC",
    "FAILED_STORAGE_FULL",
    "INFERENCE_TASK",
    "PROCESSING_LEASE",
    "Analysed",
    "ImageRejected",
    "InstanceRejected",
    "Preview",
    "Received",
    "ReviewFields",
    "review_fields",
    "ServiceError",
    "StoredFile",
    "StudyMismatch",
    "ValidatedImage",
    "analyses_store",
    "audit_record",
    "case_claim",
    "case_create",
    "case_viewed_audit",
    "case_delete",
    "case_pacs_failure_set",
    "case_pacs_retry_audit",
    "case_reanalyse",
    "case_refresh_status",
    "case_release",
    "cases_listed_audit",
    "image_enqueue",
    "image_enqueue_on_commit",
    "image_file_open",
    "image_header_for_user",
    "image_retry",
    "image_validate",
    "images_claim",
    "images_fail",
    "inference_run",
    "instance_receive",
    "reanalyse_unreported",
    "report_reassign",
    "requeue_stale",
    "review_amend",
    "review_sign",
    "review_submit",
    "uploads_validate",
]
