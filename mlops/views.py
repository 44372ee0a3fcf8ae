"""Admin-only pages for datasets, training runs and model versions. Every view checks the
role (model_operator_required); files are served only through these checks."""

from __future__ import annotations

import os
from typing import TypeVar

from django.conf import settings
from django.contrib import messages
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.permissions import model_operator_required
from diagnosis import selectors as clinical
from diagnosis import services as clinical_services
from mlops import calibration, forms, rollout, selectors, services
from mlops.models import Dataset, DatasetImage, Evaluation, ImportJob, SiteCalibration, TrainingRun
from registry import selectors as registry
from registry.models import Activation, ModelVersion

PLOTS = Evaluation.PLOTS
Response = TypeVar("Response", bound=HttpResponseBase)


def _private(response: Response) -> Response:
    response["Cache-Control"] = "private, no-store"
    return response


# --- overview and datasets -------------------------------------------------------------


@model_operator_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "mlops/home.html",
        {
            "datasets": selectors.dataset_list(),
            "runs": selectors.recent_runs(),
            "active": registry.active_version(),
            "activations": registry.activation_history()[:5],
            "events": selectors.recent_events(),
            "form": forms.DatasetForm(),
        },
    )


@model_operator_required
@require_POST
def dataset_create(request: HttpRequest) -> HttpResponse:
    form = forms.DatasetForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the dataset a name (at most 100 characters).")
        return redirect("mlops:home")
    try:
        dataset = services.dataset_create(user=request.user, **form.cleaned_data)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
        return redirect("mlops:home")
    return redirect("mlops:dataset_detail", dataset_id=dataset.pk)


@model_operator_required
@require_GET
def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    filters = {k: request.GET.get(k, "") for k in ("label", "source", "excluded")}
    split = request.GET.get("split")
    images = selectors.dataset_images(dataset=dataset, split=split, **filters)
    page = Paginator(images, 48).get_page(request.GET.get("page"))
    return render(
        request,
        "mlops/dataset_detail.html",
        {
            "dataset": dataset,
            "page": page,
            "filters": request.GET,
            "balance": selectors.dataset_balance(dataset=dataset),
            "total": dataset.images.count(),
            "imports": dataset.imports.all()[:5],
            "runs": dataset.runs.all()[:5],
            "events": selectors.recent_events(dataset=dataset, limit=10),
            "import_form": forms.ImportForm(),
            "split_form": forms.SplitForm(initial={"seed": dataset.split_seed or 1337}),
            "train_form": forms.TrainForm(),
            "problems": services.trainable_problems(dataset),
            "labels": DatasetImage._meta.get_field("label").choices,
            "sources": DatasetImage.Source.choices,
        },
    )


@model_operator_required
@require_POST
def dataset_import(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    form = forms.ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose a zip file to import.")
        return redirect("mlops:dataset_detail", dataset_id=dataset.pk)
    try:
        job = services.import_job_create(
            dataset=dataset, upload=form.cleaned_data["archive"], user=request.user
        )
    except services.ServiceError as exc:
        messages.error(request, str(exc))
        return redirect("mlops:dataset_detail", dataset_id=dataset.pk)
    return redirect("mlops:import_detail", job_id=job.pk)


@model_operator_required
@require_GET
def import_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(ImportJob.objects.select_related("dataset"), pk=job_id)
    return render(request, "mlops/import_detail.html", {"job": job})


@model_operator_required
@never_cache
@require_GET
def import_status(request: HttpRequest, job_id: int) -> JsonResponse:
    job = get_object_or_404(ImportJob, pk=job_id)
    return JsonResponse(
        {
            "status": job.status,
            "total": job.total,
            "processed": job.processed,
            "error": job.error,
            "summary": job.summary,
        }
    )


@model_operator_required
@require_POST
def dataset_split(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    form = forms.SplitForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.dataset_assign_splits(
                dataset=dataset,
                validation_fraction=data["validation_percent"] / 100,
                test_fraction=data["test_percent"] / 100,
                seed=data["seed"],
                user=request.user,
            )
            messages.success(request, f"Splits assigned by patient with seed {data['seed']}.")
        except services.ServiceError as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, "Check the split percentages and seed.")
    return redirect("mlops:dataset_detail", dataset_id=dataset.pk)


@model_operator_required
@require_GET
def dataset_export(request: HttpRequest, dataset_id: int) -> FileResponse:
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    path = services.dataset_export(dataset=dataset, user=request.user)
    handle = path.open("rb")
    os.unlink(path)  # the open handle keeps the data until the response is sent
    response = FileResponse(
        handle,
        as_attachment=True,
        filename=f"dataset-{dataset.pk}.zip",
        content_type="application/zip",
    )
    return _private(response)


@model_operator_required
@require_POST
def dataset_feedback(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    services.dataset_set_feedback_target(dataset=dataset, user=request.user)
    messages.success(request, f"Signed normal/pneumonia reports now flow into {dataset.name}.")
    return redirect("mlops:dataset_detail", dataset_id=dataset.pk)


# --- images ----------------------------------------------------------------------------


@model_operator_required
def image_detail(request: HttpRequest, image_id: int) -> HttpResponse:
    image = get_object_or_404(DatasetImage.objects.select_related("dataset"), pk=image_id)
    if request.method == "POST":
        _image_action(request, image)
        return redirect("mlops:image_detail", image_id=image.pk)
    return render(
        request,
        "mlops/image_detail.html",
        {
            "image": image,
            "changes": image.label_changes.select_related("actor"),
            "relabel_form": forms.RelabelForm(initial={"label": image.label}),
        },
    )


def _image_action(request: HttpRequest, image: DatasetImage) -> None:
    if "label" in request.POST:
        form = forms.RelabelForm(request.POST)
        if form.is_valid():
            services.image_relabel(image=image, label=form.cleaned_data["label"], user=request.user)
            messages.success(request, "Label changed.")
    elif "excluded" in request.POST:
        services.image_set_excluded(
            image=image,
            excluded=request.POST["excluded"] == "1",
            reason=request.POST.get("reason", ""),
            user=request.user,
        )
        messages.success(request, "Exclusion updated.")


@model_operator_required
@never_cache
@require_GET
def image_file(request: HttpRequest, image_id: int, kind: str) -> HttpResponseBase:
    image = get_object_or_404(DatasetImage, pk=image_id)
    if kind == "thumb":
        return _private(FileResponse(image.thumbnail.open("rb"), content_type="image/png"))
    if kind == "view":
        # Stored, never decoded here: PNG and JPEG as they are, DICOM as its import made it.
        if image.view:
            return _private(FileResponse(image.view.open("rb"), content_type="image/png"))
        if image.format in ("png", "jpeg"):
            content_type = f"image/{image.format}"
            return _private(FileResponse(image.file.open("rb"), content_type=content_type))
        return _private(FileResponse(image.thumbnail.open("rb"), content_type="image/png"))
    raise Http404


# --- training runs ---------------------------------------------------------------------


@model_operator_required
@require_POST
def run_start(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    form = forms.TrainForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Check the training settings.")
        return redirect("mlops:dataset_detail", dataset_id=dataset.pk)
    try:
        run = services.training_run_start(dataset=dataset, user=request.user, **form.cleaned_data)
    except services.ServiceError as exc:
        messages.error(request, f"Training refused: {exc}")
        return redirect("mlops:dataset_detail", dataset_id=dataset.pk)
    return redirect("mlops:run_detail", run_id=run.pk)


@model_operator_required
@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    runs = selectors.recent_runs(limit=200)
    return render(request, "mlops/run_list.html", {"runs": runs})


@model_operator_required
@require_GET
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun.objects.select_related("dataset"), pk=run_id)
    return render(request, "mlops/run_detail.html", {"run": run})


def _run_state(run: TrainingRun) -> dict:
    version = getattr(run, "model_version", None)
    return {
        "status": run.status,
        "history": run.history,
        "log": run.log,
        "error": run.error,
        "epochs": run.config.get("epochs"),
        "cancel_requested": run.cancel_requested,
        "version": version.version if version else None,
        "version_url": f"/mlops/versions/{version.pk}/" if version else None,
    }


@model_operator_required
@never_cache
@require_GET
def run_status(request: HttpRequest, run_id: int) -> JsonResponse:
    run = get_object_or_404(TrainingRun, pk=run_id)
    return JsonResponse(_run_state(run))


@model_operator_required
@require_POST
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun, pk=run_id)
    services.training_run_cancel(run=run, user=request.user)
    messages.success(request, "Cancellation requested.")
    return redirect("mlops:run_detail", run_id=run.pk)


# --- model versions --------------------------------------------------------------------


@model_operator_required
@require_GET
def version_list(request: HttpRequest) -> HttpResponse:
    return _version_list_page(request, _int_or_none(request.GET.get("override")))


def _version_list_page(
    request: HttpRequest, override_activation: int | None, status: int = 200
) -> HttpResponse:
    context = {
        "rows": selectors.version_rows(),
        "datasets": Dataset.objects.all(),
        "activations": registry.activation_history()[:20],
        # A rollback the floors refused: its form asks for an override reason.
        "override_activation": override_activation,
    }
    return render(request, "mlops/version_list.html", context, status=status)


@model_operator_required
@require_GET
def version_detail(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(selectors.versions_with_provenance(), pk=version_id)
    # After a refusal (?override=<operating point>) the form asks for an override reason.
    refused = request.GET.get("override")
    refused = refused if refused in dict(forms.OPERATING_POINTS) else None
    form = forms.ActivateForm(initial={"operating_point": refused or "card"})
    return _version_page(request, version, form, refused)


def _version_page(
    request: HttpRequest,
    version: ModelVersion,
    form: forms.ActivateForm,
    refused: str | None,
    status: int = 200,
) -> HttpResponse:
    form.fields["override_reason"].widget.attrs["required"] = bool(refused)
    context = {
        "version": version,
        "evaluations": version.evaluations.select_related("dataset"),
        "activations": registry.activation_history(version=version),
        "form": form,
        "refused": refused,
        "floors": rollout.floors(),
        "plots": PLOTS,
        "points": registry.operating_points(version),
        "site_calibration": _calibration_view(selectors.calibration_of(version)),
        "calibrations": selectors.calibrations_from(version)[:10],
    }
    return render(request, "mlops/version_detail.html", context, status=status)


@model_operator_required
@require_POST
def version_activate(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion, pk=version_id)
    page = reverse("mlops:version_detail", args=[version.pk])
    form = forms.ActivateForm(request.POST)
    if not form.is_valid():
        # The page again, with the form and what is wrong with it.
        messages.error(request, "Choose an operating point and give the reason in words.")
        version = get_object_or_404(selectors.versions_with_provenance(), pk=version.pk)
        point = request.POST.get("operating_point")
        refused = point if point in dict(forms.OPERATING_POINTS) else "card"
        return _version_page(request, version, form, refused, status=400)
    try:
        done = rollout.rollout_activate(
            version=version,
            user=request.user,
            operating_point=form.cleaned_data["operating_point"],
            override_reason=form.cleaned_data["override_reason"],
        )
    except rollout.ActivationRefused as exc:
        # Shown beside the override field the page opens at, not above it out of sight.
        messages.error(request, str(exc), extra_tags="inline")
        query = urlencode({"override": form.cleaned_data["operating_point"]})
        return redirect(f"{page}?{query}#activate-form")
    except services.ServiceError as exc:
        messages.error(request, str(exc))
        return redirect(page)
    messages.success(request, rollout.rollout_summary(done))
    return redirect(page)


@model_operator_required
@require_POST
def version_rollback(request: HttpRequest, activation_id: int) -> HttpResponse:
    activation = get_object_or_404(Activation.objects.select_related("version"), pk=activation_id)
    form = forms.RollbackForm(request.POST)
    if not form.is_valid():
        problems = form.errors.get("override_reason") or ["Give the reason in words."]
        messages.error(request, " ".join(str(problem) for problem in problems))
        return _version_list_page(request, activation.pk, status=400)
    reason = form.cleaned_data["override_reason"]
    try:
        done = rollout.rollout_rollback(
            activation=activation, user=request.user, override_reason=reason
        )
    except rollout.ActivationRefused as exc:
        messages.error(request, str(exc), extra_tags="inline")
        query = urlencode({"override": activation.pk})
        return redirect(f"{reverse('mlops:version_list')}?{query}#rollback-{activation.pk}")
    except services.ServiceError as exc:
        messages.error(request, str(exc))
        return redirect("mlops:version_detail", version_id=activation.version_id)
    messages.success(request, f"Rolled back. {rollout.rollout_summary(done)}")
    return redirect("mlops:version_detail", version_id=done.version.pk)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


@model_operator_required
@never_cache
@require_GET
def evaluation_plot(request: HttpRequest, evaluation_id: int, plot: str) -> FileResponse:
    evaluation = get_object_or_404(Evaluation, pk=evaluation_id)
    name = evaluation.plots.get(plot)
    if plot not in PLOTS or not name:
        raise Http404
    return _private(FileResponse(default_storage.open(name, "rb"), content_type="image/png"))


@model_operator_required
def version_compare(request: HttpRequest) -> HttpResponse:
    source = request.POST if request.method == "POST" else request.GET
    context: dict = {
        "versions": ModelVersion.objects.all(),
        "datasets": Dataset.objects.all(),
        "plots": PLOTS,
        "selected": source,
    }
    try:
        a = ModelVersion.objects.get(pk=int(source.get("a", "")))
        b = ModelVersion.objects.get(pk=int(source.get("b", "")))
        dataset = Dataset.objects.get(pk=int(source.get("dataset", "")))
    except (ValueError, ModelVersion.DoesNotExist, Dataset.DoesNotExist):
        return render(request, "mlops/version_compare.html", context)
    if request.method == "POST":
        _queue_missing(request, a, b, dataset)
        return redirect(f"{request.path}?a={a.pk}&b={b.pk}&dataset={dataset.pk}")
    digest, eval_a, eval_b = selectors.evaluation_pair(a=a, b=b, dataset=dataset)
    context.update(
        a=a,
        b=b,
        dataset=dataset,
        eval_a=eval_a,
        eval_b=eval_b,
        digest=digest,
        rows=_compare_rows(eval_a, eval_b),
    )
    return render(request, "mlops/version_compare.html", context)


def _queue_missing(
    request: HttpRequest, a: ModelVersion, b: ModelVersion, dataset: Dataset
) -> None:
    _digest, eval_a, eval_b = selectors.evaluation_pair(a=a, b=b, dataset=dataset)
    try:
        for version, existing in ((a, eval_a), (b, eval_b)):
            if existing is None:
                services.evaluation_start(version=version, dataset=dataset, user=request.user)
        messages.success(request, "Evaluations queued on the training worker.")
    except services.ServiceError as exc:
        messages.error(request, str(exc))


METRIC_ROWS = (
    "count",
    "roc_auc",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "accuracy",
    "expected_calibration_error",
    "threshold",
)


def _compare_rows(eval_a: Evaluation | None, eval_b: Evaluation | None) -> list[tuple]:
    done = [e.metrics if e and e.status == Evaluation.Status.DONE else {} for e in (eval_a, eval_b)]
    return [(key, done[0].get(key), done[1].get(key)) for key in METRIC_ROWS]


# --- site calibration ------------------------------------------------------------------


@model_operator_required
@require_http_methods(["GET", "POST"])
def version_calibrate(request: HttpRequest, version_id: int) -> HttpResponse:
    """GET: the form and how many signed images of each class it matches (recounted for
    every change of the filters); POST: start the calibration, or say why it cannot."""
    version = get_object_or_404(ModelVersion, pk=version_id)
    if request.method == "GET":
        form = forms.CalibrationForm(request.GET or _calibration_defaults())
        return _calibrate_page(request, version, form)
    form = forms.CalibrationForm(request.POST)
    if form.is_valid():
        try:
            job = calibration.calibration_start(
                version=version, filters=form.filters(), user=request.user, **form.options()
            )
        except services.ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Site calibration queued on the training worker.")
            return redirect("mlops:calibration_detail", calibration_id=job.pk)
    return _calibrate_page(request, version, form)


def _calibration_defaults() -> dict:
    form = forms.CalibrationForm()
    return {name: form.fields[name].initial for name in ("holdout_percent", "target_sensitivity")}


def _calibrate_page(
    request: HttpRequest, version: ModelVersion, form: forms.CalibrationForm
) -> HttpResponse:
    context: dict = {"version": version, "form": form, "preview": None}
    if form.is_valid():
        options = form.options()
        context["preview"] = calibration.calibration_set(
            version=version,
            filters=form.filters(),
            holdout=options["holdout"],
            min_per_class=settings.CHESTNET_CALIBRATION_MIN_PER_CLASS,
        )
        context["counts"] = context["preview"].counts()
    context["min_per_class"] = settings.CHESTNET_CALIBRATION_MIN_PER_CLASS
    context["choices"] = _filter_choices(version)
    status = 200 if form.is_valid() and request.method == "GET" else 400
    return render(request, "mlops/calibrate.html", context, status=status)


def _filter_choices(version: ModelVersion) -> dict[str, list[str]]:
    """The sources, modalities and manufacturers among the version's signed images, offered
    as suggestions in the form."""
    rows = calibration.calibration_outcomes(
        version=version, filters=calibration.CalibrationFilters()
    )
    return {
        "source": sorted({r.source for r in rows} | {r.sender for r in rows if r.sender}),
        "modality": sorted({r.modality for r in rows if r.modality}),
        "manufacturer": sorted({r.manufacturer for r in rows if r.manufacturer}),
    }


@model_operator_required
@require_GET
def calibration_detail(request: HttpRequest, calibration_id: int) -> HttpResponse:
    job = get_object_or_404(
        SiteCalibration.objects.select_related("base_version", "new_version", "requested_by").defer(
            "items"
        ),
        pk=calibration_id,
    )
    return render(request, "mlops/calibration_detail.html", {"view": _calibration_view(job)})


@model_operator_required
@never_cache
@require_GET
def calibration_status(request: HttpRequest, calibration_id: int) -> JsonResponse:
    job = get_object_or_404(
        SiteCalibration.objects.select_related("new_version").defer("items"), pk=calibration_id
    )
    version = job.new_version
    return JsonResponse(
        {
            "status": job.status,
            "error": job.error,
            "version": version.version if version else None,
            "version_url": reverse("mlops:version_detail", args=[version.pk]) if version else None,
        }
    )


def _calibration_view(job: SiteCalibration | None) -> dict | None:
    """The job with its before/after table and its filters in words, for the templates."""
    if job is None:
        return None
    rows = calibration.comparison_rows(before=job.before, after=job.after) if job.after else []
    filters = calibration.CalibrationFilters.from_json(job.filters).describe()
    # The fit's offset is written as a signed term: "+ 0.430" or "− 0.430", never "+ -0.430".
    shift = job.fit["shift"] if job.fit else 0.0
    return {"job": job, "rows": rows, "filters": filters, "shift_abs": abs(shift)}


# --- cases: re-run with the active version ---------------------------------------------


@model_operator_required
@require_POST
def case_rerun(request: HttpRequest, case_id: int) -> HttpResponse:
    case = clinical.case_get_for_user(user=request.user, case_id=case_id)
    try:
        count = clinical_services.case_reanalyse(case=case, user=request.user)
        messages.success(request, f"{count} image(s) queued for analysis with the active model.")
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    return redirect("case_detail", case_id=case.pk)


@model_operator_required
@require_GET
def case_predictions(request: HttpRequest, case_id: int) -> HttpResponse:
    case = clinical.case_get_for_user(user=request.user, case_id=case_id)
    images, prior = clinical.case_prediction_history(case=case)
    return render(
        request, "mlops/case_predictions.html", {"case": case, "images": images, "prior": prior}
    )
